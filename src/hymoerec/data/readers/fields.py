"""Parsing one field or one row at a time, with errors at the row's line, and assembling
the parsed columns into :class:`Interactions`."""

from __future__ import annotations

import ast
import csv
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hymoerec.data.errors import DataError, MalformedRowError
from hymoerec.data.interactions import Ids, Interactions

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)
INT64 = (-(2**63), 2**63 - 1)
_EXACT_FLOAT = 2**53  # integers beyond this lose their order when stored as float64
_SHOWN = 60  # characters of a field shown in an error message
_CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB) rejects long text columns


def ids(path: Path, number: int, user: str, item: str) -> tuple[str, str]:
    """The user and item ids of a row, without the whitespace around them."""
    user, item = user.strip(), item.strip()
    if not user:
        raise MalformedRowError(path, number, "empty user id")
    if not item:
        raise MalformedRowError(path, number, "empty item id")
    return user, item


def is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if long."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text):,} characters)"


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines[0]) <= 2 * _SHOWN else lines[0][: 2 * _SHOWN] + "..."


class Times:
    """Timestamps gathered row by row, then one array: int64 when every one is an integer,
    float64 otherwise. What either type would silently change is refused at its line: an
    integer outside int64, or an integer past 2**53 beside fractional timestamps (float64
    would round it and reorder the sequence)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: list[int | float] = []
        self.first_fraction: int | None = None  # line of the first fractional timestamp
        self.first_large: tuple[int, int] | None = None  # (line, value) past 2**53

    def add(self, number: int, value: int | float) -> None:
        if isinstance(value, float):
            if self.first_fraction is None:
                self.first_fraction = number
                self._check_mix()
        else:
            if not INT64[0] <= value <= INT64[1]:
                problem = f"timestamp {shown(str(value))} does not fit in int64"
                raise MalformedRowError(self.path, number, problem)
            if abs(value) > _EXACT_FLOAT and self.first_large is None:
                self.first_large = (number, value)
                self._check_mix()
        self.values.append(value)

    def _check_mix(self) -> None:
        if self.first_fraction is None or self.first_large is None:
            return
        line, value = self.first_large
        problem = (
            f"integer timestamp {value} is too large to order exactly beside the fractional "
            f"timestamp of line {self.first_fraction}"
        )
        raise MalformedRowError(self.path, max(line, self.first_fraction), problem)

    def array(self) -> np.ndarray:
        if self.first_fraction is None:
            return np.asarray(self.values, dtype=np.int64).reshape(-1)
        return np.asarray(self.values, dtype=np.float64).reshape(-1)


def parse_rating(path: Path, number: int, text: str) -> float:
    try:
        rating = float(text)
    except ValueError:
        raise MalformedRowError(path, number, f"rating {shown(text)} is not a number") from None
    if not math.isfinite(rating):
        raise MalformedRowError(path, number, f"rating {shown(text)} is not a finite number")
    return rating


def parse_number_time(path: Path, number: int, text: str) -> int | float:
    """An integer or float timestamp; integral floats become ints."""
    try:
        return int(text)
    except ValueError:  # also an integer of more digits than Python converts (4300)
        pass
    try:
        value = float(text)
    except ValueError:
        problem = f"timestamp {shown(text)} is not a number"
        raise MalformedRowError(path, number, problem) from None
    if not math.isfinite(value):
        problem = f"timestamp {shown(text)} is not a finite number"
        raise MalformedRowError(path, number, problem)
    return int(value) if value.is_integer() else value


def parse_any_time(path: Path, number: int, text: str) -> int | float:
    """A number, or an ISO-8601 date/datetime as int seconds since the epoch (UTC if naive)."""
    try:
        return parse_number_time(path, number, text)
    except MalformedRowError:
        pass
    iso = text.strip()
    if iso[-1:] in ("Z", "z"):  # fromisoformat accepts "Z" only from Python 3.11
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        problem = f"timestamp {shown(text)} is not a number or an ISO-8601 date"
        raise MalformedRowError(path, number, problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _SECOND


def parse_object(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except RecursionError:
        raise MalformedRowError(path, number, "JSON nested too deeply to read") from None
    except json.JSONDecodeError as err:
        try:
            value = ast.literal_eval(line.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            problem = f"invalid JSON: {err.msg} (column {err.colno})"
            raise MalformedRowError(path, number, problem) from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise MalformedRowError(path, number, f"invalid JSON: {first_line(err)}") from None
    if not isinstance(value, dict):
        problem = f"expected a JSON object, got {type(value).__name__}"
        raise MalformedRowError(path, number, problem)
    return value


def id_value(path: Path, number: int, review: dict[str, Any], key: str) -> str:
    if key not in review:
        raise MalformedRowError(path, number, f"missing key {key!r}")
    value = review[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        text = shown(repr(value))[1:-1]
        raise MalformedRowError(path, number, f"{key!r} is not a string: {text}")
    text = str(value).strip()
    if text == "":
        raise MalformedRowError(path, number, f"{key!r} is empty")
    return text


def json_time(path: Path, number: int, review: dict[str, Any]) -> int | float:
    key = "unixReviewTime"
    if key not in review:
        raise MalformedRowError(path, number, f"missing key {key!r}")
    value = review[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        text = shown(repr(value))[1:-1]
        raise MalformedRowError(path, number, f"timestamp {text} is not a number")
    return parse_number_time(path, number, str(value))


def json_rating(path: Path, number: int, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MalformedRowError(path, number, f"rating {shown(repr(value))[1:-1]} is not a number")
    return parse_rating(path, number, str(value))


def csv_rows(path: Path, lines: Iterator[str], sep: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, fields) of every non-blank CSV row.

    The csv module in strict mode: a stray quote or a quoted field still open at the end
    of the file is an error at the line where the row starts, not where reading stopped.
    Read inside :func:`csv_field_limit`.
    """
    reader = csv.reader(lines, delimiter=sep, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            problem = str(err)
            if "end of data" in problem:
                problem = "a quoted field opened here is not closed before the end of the file"
            raise MalformedRowError(path, start, f"not valid CSV: {problem}") from None
        if not is_blank(row):
            yield start, row


@contextmanager
def csv_field_limit() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit while a reader runs (a review text column
    is legitimately longer), and put the process-wide setting back afterwards."""
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


# --------------------------------------------------------------------------- assembly


@dataclass(frozen=True)
class Columns:
    """What a reader parsed, before ``min_rating`` is applied."""

    user: Ids
    item: Ids
    timestamp: np.ndarray  # (n,) int64, or float64 if any timestamp is fractional
    rating: np.ndarray | None  # (n,) float64


def columns(
    users: Sequence[str],
    items: Sequence[str],
    times: np.ndarray,
    ratings: Sequence[float | None] | None,
) -> Columns:
    """Columns from the Python lists of the line-by-line reader."""
    rating = None if ratings is None else np.asarray(ratings, dtype=np.float64)
    return Columns(Ids.encode(users), Ids.encode(items), np.asarray(times), rating)


def build(path: Path, parsed: Columns, min_rating: float | None) -> Interactions:
    if len(parsed.user) == 0:
        raise DataError(f"{path}: no interactions (the file is empty)")
    user, item, timestamp, rating = parsed.user, parsed.item, parsed.timestamp, parsed.rating
    if timestamp.dtype.kind == "i":
        timestamp = timestamp.astype(np.int64, copy=False)
    elif timestamp.dtype.kind != "f":  # readers check every value; this guards new ones
        raise DataError(f"{path}: timestamps do not fit in int64")
    if rating is None:
        if min_rating is not None:
            raise DataError(f"{path}: min_rating={min_rating} given but the file has no ratings")
        return Interactions(user, item, timestamp)
    if min_rating is not None:
        keep = rating >= min_rating
        if not keep.any():
            raise DataError(f"{path}: no interactions with rating >= {min_rating}")
        if not keep.all():
            return Interactions(user, item, timestamp, rating).select(keep)
    return Interactions(user, item, timestamp, rating)


def integral_if_possible(path: Path, times: np.ndarray) -> np.ndarray:
    if not np.isfinite(times).all():
        raise DataError(f"{path}: timestamps must be finite")
    if np.array_equal(times, np.floor(times)) and np.abs(times).max() < 2**63:
        return times.astype(np.int64)
    return times
