"""The line-by-line readers: every row parsed in Python and checked as it is read.

They define what every format means, and they report a bad row at its line. The
columnar readers (:mod:`hymoerec.data.readers.columnar`) give the same result faster
and hand a file over to these when they cannot promise that, so a file's errors are
always found and worded here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hymoerec.data.errors import DataError, MalformedRowError
from hymoerec.data.readers.fields import (
    Columns,
    Times,
    columns,
    csv_field_limit,
    csv_rows,
    id_value,
    ids,
    json_rating,
    json_time,
    parse_any_time,
    parse_number_time,
    parse_object,
    parse_rating,
    shown,
)
from hymoerec.data.readers.files import text_lines


def movielens_dat(path: Path, encoding: str, progress: bool) -> Columns:
    with text_lines(path, encoding, progress) as lines:
        rows = (
            (number, line.rstrip("\r\n").split("::"))
            for number, line in enumerate(lines, start=1)
            if not line.isspace()
        )
        return _rating_rows(path, rows, "'::'")


def movielens_100k(path: Path, encoding: str, progress: bool) -> Columns:
    with text_lines(path, encoding, progress) as lines:
        rows = ((number, line.split()) for number, line in enumerate(lines, start=1))
        return _rating_rows(path, (r for r in rows if r[1]), "tabs")


def sequences(path: Path, encoding: str, progress: bool) -> Columns:
    users: list[str] = []
    items: list[str] = []
    with text_lines(path, encoding, progress) as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 1:
                raise MalformedRowError(path, number, f"user {shown(fields[0])} has no items")
            users.extend([fields[0]] * (len(fields) - 1))
            items.extend(fields[1:])
    return columns(users, items, np.arange(len(users), dtype=np.int64), None)


def amazon_ratings(path: Path, encoding: str, progress: bool) -> Columns:
    with text_lines(path, encoding, progress) as lines, csv_field_limit():
        return _rating_rows(path, csv_rows(path, lines, ","), "','")


def amazon_reviews(path: Path, encoding: str, progress: bool) -> Columns:
    users: list[str] = []
    items: list[str] = []
    times = Times(path)
    ratings: list[float | None] = []
    first_unrated: int | None = None  # line of the first review without 'overall'
    with text_lines(path, encoding, progress) as lines:
        for number, line in enumerate(lines, start=1):
            if line.isspace():
                continue
            review = parse_object(path, number, line)
            users.append(id_value(path, number, review, "reviewerID"))
            items.append(id_value(path, number, review, "asin"))
            times.add(number, json_time(path, number, review))
            overall = review.get("overall")
            if overall is None:
                first_unrated = first_unrated or number
                ratings.append(None)
            else:
                ratings.append(json_rating(path, number, overall))
    if first_unrated is None:
        return columns(users, items, times.array(), ratings)
    if any(rating is not None for rating in ratings):
        raise MalformedRowError(path, first_unrated, "missing key 'overall'")
    return columns(users, items, times.array(), None)


def delimited(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None,
    rating_col: str | None,
    sep: str,
    encoding: str,
    progress: bool,
) -> Columns:
    users: list[str] = []
    items: list[str] = []
    times = Times(path)
    ratings: list[float] = []
    with text_lines(path, encoding, progress) as lines, csv_field_limit():
        rows = csv_rows(path, lines, sep)
        _, header = next(rows, (0, None))
        if header is None:
            raise DataError(f"{path}: no interactions (the file is empty)")
        names = [name.strip() for name in header]
        user_at = column_index(path, names, user_col)
        item_at = column_index(path, names, item_col)
        time_at = None if time_col is None else column_index(path, names, time_col)
        rating_at = None if rating_col is None else column_index(path, names, rating_col)
        width = len(names)
        for number, row in rows:
            if len(row) != width:
                problem = f"expected {width} fields separated by {sep!r}, got {len(row)}"
                raise MalformedRowError(path, number, problem)
            user, item = ids(path, number, row[user_at], row[item_at])
            users.append(user)
            items.append(item)
            if time_at is not None:
                times.add(number, parse_any_time(path, number, row[time_at]))
            if rating_at is not None:
                ratings.append(parse_rating(path, number, row[rating_at]))
    timestamps = times.array() if time_at is not None else np.arange(len(users), dtype=np.int64)
    return columns(users, items, timestamps, ratings if rating_at is not None else None)


def column_index(path: Path, names: list[str], name: str) -> int:
    if name not in names:
        found = ", ".join(repr(found) for found in names)
        raise DataError(f"{path}: no column {name!r} (columns found: {found})")
    return names.index(name)


def _rating_rows(path: Path, rows: Iterator[tuple[int, list[str]]], separator: str) -> Columns:
    """(line number, fields) rows of ``user item rating timestamp`` -> Columns."""
    users: list[str] = []
    items: list[str] = []
    times = Times(path)
    ratings: list[float] = []
    for number, fields in rows:
        if len(fields) != 4:
            problem = f"expected 4 fields separated by {separator}, got {len(fields)}"
            raise MalformedRowError(path, number, problem)
        user, item = ids(path, number, fields[0], fields[1])
        users.append(user)
        items.append(item)
        ratings.append(parse_rating(path, number, fields[2]))
        times.add(number, parse_number_time(path, number, fields[3]))
    return columns(users, items, times.array(), ratings)
