"""Readers from raw interaction files to :class:`Interactions`, one function per format.

Every reader keeps the file's row order and the ids exactly as written; the protocol
sorts later (stably). Text formats are read line by line, parsed into Python lists and
converted to arrays once. Gzip-compressed text is detected by its magic bytes, so any
text reader also takes a ``.gz`` file. Errors name the file and, for a bad row, the
1-based line number a text editor shows (blank lines count but are skipped).

Ids are read with the whitespace around them removed, in every format (`` 4`` and ``4``
are one user), and a field shown in an error is cut to a few dozen characters.
Timestamps are int64 when every one is an integer, else float64; an integer that int64
cannot hold, or one too large for float64 to order beside fractional timestamps, is an
error at its line rather than a silent change of order.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hymoerec.data.errors import DataError, MalformedRowError
from hymoerec.data.interactions import Interactions

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)
_PROGRESS_EVERY = 4096  # lines between progress-bar updates; keeps the hot loop cheap
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_FLOAT = 2**53  # integers beyond this lose their order when stored as float64
_SHOWN = 60  # characters of a field shown in an error message
_CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB) rejects long text columns


# --------------------------------------------------------------------------- readers


def read_movielens_dat(
    path: str | Path,
    encoding: str = "iso-8859-1",
    *,
    min_rating: float | None = None,
    progress: bool = False,
) -> Interactions:
    """MovieLens-1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp`` per line.

    ISO-8859-1 (the original encoding) decodes any byte, so UTF-8 files parse too;
    pass ``encoding="utf-8"`` to get non-ASCII ids right.
    """
    path = Path(path)
    with _text_lines(path, encoding, progress) as lines:
        rows = (
            (number, line.rstrip("\r\n").split("::"))
            for number, line in enumerate(lines, start=1)
            if not line.isspace()
        )
        return _rating_rows(path, rows, "'::'", min_rating)


def read_movielens_100k(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    min_rating: float | None = None,
    progress: bool = False,
) -> Interactions:
    """MovieLens-100K ``u.data``: tab-separated ``user item rating timestamp``, no header.

    Any run of whitespace separates fields, so space-separated copies read too.
    """
    path = Path(path)
    with _text_lines(path, encoding, progress) as lines:
        rows = ((number, line.split()) for number, line in enumerate(lines, start=1))
        return _rating_rows(path, (r for r in rows if r[1]), "tabs", min_rating)


def read_sequences(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    progress: bool = False,
) -> Interactions:
    """Whitespace-separated ``user item item ...`` lines, items in chronological order.

    Covers the S3-Rec style one-line-per-user release and the SASRec release with one
    ``user item`` pair per line: a user's lines simply concatenate in file order. The
    timestamp is the running row index, so a stable sort keeps the file's order.
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    with _text_lines(path, encoding, progress) as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 1:
                raise MalformedRowError(path, number, f"user {_shown(fields[0])} has no items")
            users.extend([fields[0]] * (len(fields) - 1))
            items.extend(fields[1:])
    times = np.arange(len(users), dtype=np.int64)
    return _build(path, users, items, times, None, None)


def read_amazon_ratings(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    min_rating: float | None = None,
    progress: bool = False,
) -> Interactions:
    """Amazon 2014 ``ratings_<Category>.csv``: ``user,item,rating,timestamp``, no header."""
    path = Path(path)
    with _text_lines(path, encoding, progress) as lines, csv_field_limit():
        return _rating_rows(path, _csv_rows(path, lines, ","), "','", min_rating)


def read_amazon_reviews(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    min_rating: float | None = None,
    progress: bool = False,
) -> Interactions:
    """Amazon ``reviews_<Category>_5.json[.gz]``: one object per line.

    Uses ``reviewerID``, ``asin``, ``unixReviewTime`` and, where every row has it,
    ``overall`` as the rating. Lines that are not strict JSON are tried as Python
    literals (the older "loose" releases write dicts with single quotes).
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    times = _Times(path)
    ratings: list[float | None] = []
    first_unrated: int | None = None  # line of the first review without 'overall'
    with _text_lines(path, encoding, progress) as lines:
        for number, line in enumerate(lines, start=1):
            if line.isspace():
                continue
            review = _parse_object(path, number, line)
            users.append(_id_value(path, number, review, "reviewerID"))
            items.append(_id_value(path, number, review, "asin"))
            times.add(number, _json_time(path, number, review))
            overall = review.get("overall")
            if overall is None:
                first_unrated = first_unrated or number
                ratings.append(None)
            else:
                ratings.append(_json_rating(path, number, overall))
    if first_unrated is None:
        return _build(path, users, items, times.array(), ratings, min_rating)
    if any(rating is not None for rating in ratings):
        raise MalformedRowError(path, first_unrated, "missing key 'overall'")
    if min_rating is not None:
        raise DataError(f"{path}: min_rating={min_rating} given but no review has 'overall'")
    return _build(path, users, items, times.array(), None, None)


def read_table(
    path: str | Path,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    sep: str | None = None,
    rating_col: str | None = None,
    *,
    encoding: str = "utf-8",
    min_rating: float | None = None,
    progress: bool = False,
) -> Interactions:
    """A CSV/TSV file with a header row, or a Parquet file, with named columns.

    ``sep`` defaults from the suffix (``.tsv`` tab, ``.csv`` comma, also under ``.gz``).
    Timestamps may be integers, floats or ISO-8601 dates/datetimes (converted to int64
    seconds since the epoch, UTC when no zone is given). ``time_col=None`` uses the row
    index, keeping file order.
    """
    path = Path(path)
    if rating_col is None and min_rating is not None:
        raise DataError(f"{path}: min_rating={min_rating} needs rating_col")
    columns = (user_col, item_col, time_col, rating_col)
    if _is_parquet(path):
        return _read_parquet(path, *columns, min_rating=min_rating)
    return _read_delimited(path, *columns, _separator(path, sep), encoding, min_rating, progress)


# ------------------------------------------------------------------ delimited and parquet


def _separator(path: Path, sep: str | None) -> str:
    if sep is not None:
        return sep
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv":
        return ","
    raise DataError(
        f"{path}: cannot tell the separator from the suffix {suffix or '(none)'!r}: "
        "name the file .csv (commas) or .tsv (tabs), or give read_table a sep in Python"
    )


def _read_delimited(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None,
    rating_col: str | None,
    sep: str,
    encoding: str,
    min_rating: float | None,
    progress: bool,
) -> Interactions:
    users: list[str] = []
    items: list[str] = []
    times = _Times(path)
    ratings: list[float] = []
    with _text_lines(path, encoding, progress) as lines, csv_field_limit():
        rows = _csv_rows(path, lines, sep)
        _, header = next(rows, (0, None))
        if header is None:
            raise DataError(f"{path}: no interactions (the file is empty)")
        names = [name.strip() for name in header]
        user_at = _column_index(path, names, user_col)
        item_at = _column_index(path, names, item_col)
        time_at = None if time_col is None else _column_index(path, names, time_col)
        rating_at = None if rating_col is None else _column_index(path, names, rating_col)
        width = len(names)
        for number, row in rows:
            if len(row) != width:
                problem = f"expected {width} fields separated by {sep!r}, got {len(row)}"
                raise MalformedRowError(path, number, problem)
            user, item = _ids(path, number, row[user_at], row[item_at])
            users.append(user)
            items.append(item)
            if time_at is not None:
                times.add(number, _parse_any_time(path, number, row[time_at]))
            if rating_at is not None:
                ratings.append(_parse_rating(path, number, row[rating_at]))
    timestamps = times.array() if time_at is not None else np.arange(len(users), dtype=np.int64)
    rated = ratings if rating_at is not None else None
    return _build(path, users, items, timestamps, rated, min_rating)


def _column_index(path: Path, names: list[str], name: str) -> int:
    if name not in names:
        found = ", ".join(repr(found) for found in names)
        raise DataError(f"{path}: no column {name!r} (columns found: {found})")
    return names.index(name)


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    with _open_raw(path) as raw:
        return raw.peek(4)[:4] == _PARQUET_MAGIC


def _read_parquet(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None,
    rating_col: str | None,
    *,
    min_rating: float | None,
) -> Interactions:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"reading the Parquet file {path} needs pyarrow: pip install 'hymoerec[parquet]'"
        ) from None
    with _open_raw(path):  # a missing file is a DataError, as for the text readers
        pass
    wanted = [name for name in (user_col, item_col, time_col, rating_col) if name is not None]
    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable Parquet file: {err}") from None
    for name in wanted:
        _column_index(path, names, name)
    try:
        table = pq.read_table(path, columns=list(dict.fromkeys(wanted)))
    except (OSError, ValueError, NotImplementedError) as err:  # Arrow errors derive from these
        raise DataError(f"{path}: not a readable Parquet file: {_first_line(err)}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no interactions (the file is empty)")
    user = _arrow_ids(path, table.column(user_col), user_col)
    item = _arrow_ids(path, table.column(item_col), item_col)
    if time_col is None:
        timestamp = np.arange(table.num_rows, dtype=np.int64)
    else:
        timestamp = _arrow_times(path, table.column(time_col), time_col)
    rating = None
    if rating_col is not None:
        rating = _arrow_ratings(path, table.column(rating_col), rating_col)
    return _build(path, user, item, timestamp, rating, min_rating)


def _arrow_no_nulls(path: Path, column: Any, name: str) -> None:
    if column.null_count:
        import pyarrow.compute as pc

        row = pc.index(column.is_null(), True).as_py() + 1
        raise DataError(f"{path}: column {name!r} is null in row {row}")


def _arrow_ids(path: Path, column: Any, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (
        pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        raise DataError(f"{path}: column {name!r} has type {column.type}, not integer or text ids")
    _arrow_no_nulls(path, column, name)
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    ids = np.asarray(text.to_numpy(zero_copy_only=False), dtype=str)
    empty = np.flatnonzero(ids == "")
    if empty.size:
        raise DataError(f"{path}: column {name!r} is an empty id in row {empty[0] + 1}")
    return ids


def _arrow_times(path: Path, column: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    _arrow_no_nulls(path, column, name)
    kind = column.type
    if pa.types.is_integer(kind):
        values = column.to_numpy()
        if values.dtype == np.uint64 and values.size and values.max() > _INT64[1]:
            row = int(np.argmax(values > _INT64[1])) + 1
            problem = f"timestamp {values[row - 1]} in row {row} does not fit in int64"
            raise DataError(f"{path}: column {name!r}: {problem}")
        return np.asarray(values, dtype=np.int64)
    if pa.types.is_floating(kind):
        return _integral_if_possible(path, np.asarray(column.to_numpy(), dtype=np.float64))
    if pa.types.is_timestamp(kind):
        seconds = column.cast(pa.timestamp("s", tz=kind.tz), safe=False)  # floors sub-seconds
        return np.asarray(seconds.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_date32(kind):
        return np.asarray(column.cast(pa.int32()).to_numpy(), dtype=np.int64) * 86_400
    if pa.types.is_date64(kind):
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64) // 1000
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        times = _Times(path)
        for row, text in enumerate(column.to_pylist(), 1):
            times.add(row, _parse_any_time(path, row, text))
        return times.array()
    raise DataError(f"{path}: column {name!r} has type {kind}, not a timestamp")


def _arrow_ratings(path: Path, column: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    _arrow_no_nulls(path, column, name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        numbers = np.asarray(column.to_numpy(), dtype=np.float64)
        if not np.isfinite(numbers).all():
            row = int(np.argmin(np.isfinite(numbers))) + 1
            raise DataError(f"{path}: column {name!r} is not a finite number in row {row}")
        return numbers
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{path}: column {name!r} has type {column.type}, not a rating")
    ratings = [_parse_rating(path, row, str(v)) for row, v in enumerate(column.to_pylist(), 1)]
    return np.asarray(ratings, dtype=np.float64)


# ------------------------------------------------------------------------- row parsing


def _ids(path: Path, number: int, user: str, item: str) -> tuple[str, str]:
    """The user and item ids of a row, without the whitespace around them."""
    user, item = user.strip(), item.strip()
    if not user:
        raise MalformedRowError(path, number, "empty user id")
    if not item:
        raise MalformedRowError(path, number, "empty item id")
    return user, item


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if long."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text):,} characters)"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines[0]) <= 2 * _SHOWN else lines[0][: 2 * _SHOWN] + "..."


class _Times:
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
            if not _INT64[0] <= value <= _INT64[1]:
                problem = f"timestamp {_shown(str(value))} does not fit in int64"
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


def _parse_rating(path: Path, number: int, text: str) -> float:
    try:
        rating = float(text)
    except ValueError:
        raise MalformedRowError(path, number, f"rating {_shown(text)} is not a number") from None
    if not math.isfinite(rating):
        raise MalformedRowError(path, number, f"rating {_shown(text)} is not a finite number")
    return rating


def _parse_number_time(path: Path, number: int, text: str) -> int | float:
    """An integer or float timestamp; integral floats become ints."""
    try:
        return int(text)
    except ValueError:  # also an integer of more digits than Python converts (4300)
        pass
    try:
        value = float(text)
    except ValueError:
        problem = f"timestamp {_shown(text)} is not a number"
        raise MalformedRowError(path, number, problem) from None
    if not math.isfinite(value):
        problem = f"timestamp {_shown(text)} is not a finite number"
        raise MalformedRowError(path, number, problem)
    return int(value) if value.is_integer() else value


def _parse_any_time(path: Path, number: int, text: str) -> int | float:
    """A number, or an ISO-8601 date/datetime as int seconds since the epoch (UTC if naive)."""
    try:
        return _parse_number_time(path, number, text)
    except MalformedRowError:
        pass
    iso = text.strip()
    if iso[-1:] in ("Z", "z"):  # fromisoformat accepts "Z" only from Python 3.11
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        problem = f"timestamp {_shown(text)} is not a number or an ISO-8601 date"
        raise MalformedRowError(path, number, problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _SECOND


def _parse_object(path: Path, number: int, line: str) -> dict[str, Any]:
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
        raise MalformedRowError(path, number, f"invalid JSON: {_first_line(err)}") from None
    if not isinstance(value, dict):
        problem = f"expected a JSON object, got {type(value).__name__}"
        raise MalformedRowError(path, number, problem)
    return value


def _id_value(path: Path, number: int, review: dict[str, Any], key: str) -> str:
    if key not in review:
        raise MalformedRowError(path, number, f"missing key {key!r}")
    value = review[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        shown = _shown(repr(value))[1:-1]
        raise MalformedRowError(path, number, f"{key!r} is not a string: {shown}")
    text = str(value).strip()
    if text == "":
        raise MalformedRowError(path, number, f"{key!r} is empty")
    return text


def _json_time(path: Path, number: int, review: dict[str, Any]) -> int | float:
    key = "unixReviewTime"
    if key not in review:
        raise MalformedRowError(path, number, f"missing key {key!r}")
    value = review[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        shown = _shown(repr(value))[1:-1]
        raise MalformedRowError(path, number, f"timestamp {shown} is not a number")
    return _parse_number_time(path, number, str(value))


def _json_rating(path: Path, number: int, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MalformedRowError(path, number, f"rating {_shown(repr(value))[1:-1]} is not a number")
    return _parse_rating(path, number, str(value))


# --------------------------------------------------------------------------- assembly


def _integral_if_possible(path: Path, times: np.ndarray) -> np.ndarray:
    if not np.isfinite(times).all():
        raise DataError(f"{path}: timestamps must be finite")
    if np.array_equal(times, np.floor(times)) and np.abs(times).max() < 2**63:
        return times.astype(np.int64)
    return times


def _build(
    path: Path,
    users: Sequence[str] | np.ndarray,
    items: Sequence[str] | np.ndarray,
    times: np.ndarray,
    ratings: Sequence[float | None] | np.ndarray | None,
    min_rating: float | None,
) -> Interactions:
    if len(users) == 0:
        raise DataError(f"{path}: no interactions (the file is empty)")
    user = np.asarray(users, dtype=str)
    item = np.asarray(items, dtype=str)
    timestamp = np.asarray(times)  # int64, or float64 if any timestamp is fractional
    if timestamp.dtype.kind == "i":
        timestamp = timestamp.astype(np.int64, copy=False)
    elif timestamp.dtype.kind != "f":  # readers check every value; this guards new ones
        raise DataError(f"{path}: timestamps do not fit in int64")
    if ratings is None:
        if min_rating is not None:
            raise DataError(f"{path}: min_rating={min_rating} given but the file has no ratings")
        return Interactions(user=user, item=item, timestamp=timestamp)
    rating = np.asarray(ratings, dtype=np.float64)
    if min_rating is not None:
        keep = rating >= min_rating
        if not keep.any():
            raise DataError(f"{path}: no interactions with rating >= {min_rating}")
        user, item, timestamp, rating = user[keep], item[keep], timestamp[keep], rating[keep]
    return Interactions(user=user, item=item, timestamp=timestamp, rating=rating)


# ---------------------------------------------------------------------------- file I/O


@contextmanager
def _open_raw(path: Path) -> Iterator[io.BufferedReader]:
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the context manager below
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot open ({err.strerror or err})") from None
    with raw:
        yield raw


def _binary_stream(raw: io.BufferedReader) -> io.BufferedReader | gzip.GzipFile:
    """The file's bytes, decompressed if gzip, past a UTF-8 byte-order mark if any."""
    stream: io.BufferedReader | gzip.GzipFile = raw
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    if stream.peek(3)[:3] == _UTF8_BOM:
        stream.read(3)
    return stream


@contextmanager
def _text_lines(path: Path, encoding: str, progress: bool) -> Iterator[Iterator[str]]:
    """Every line of the file, blank ones included, with its line ending kept.

    Lines end at ``\\n`` only, so line numbers match a text editor's; callers strip
    ``\\r\\n``. Decoding and gzip errors become :class:`DataError` naming the file.
    """
    with _open_raw(path) as raw:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=path.name)
        try:
            with io.TextIOWrapper(_binary_stream(raw), encoding=encoding, newline="\n") as text:
                yield _checked_lines(path, encoding, text, raw, bar)
        except (OSError, EOFError, zlib.error) as err:  # a corrupt or truncated gzip stream
            raise DataError(f"{path}: cannot read: {err}") from None
        finally:
            if bar is not None:
                bar.close()


def _checked_lines(
    path: Path, encoding: str, text: io.TextIOWrapper, raw: io.BufferedReader, bar: Any
) -> Iterator[str]:
    try:
        if bar is None:
            yield from text
            return
        for count, line in enumerate(text, start=1):
            if count % _PROGRESS_EVERY == 0:
                bar.update(raw.tell() - bar.n)
            yield line
        bar.update(bar.total - bar.n)
    except UnicodeDecodeError:
        raise _decode_error(path, encoding) from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read: {err}") from None


def _decode_error(path: Path, encoding: str) -> DataError:
    """Locate the first undecodable line by re-reading the file; only runs on failure."""
    advice = "pass encoding= with the file's encoding (e.g. encoding='iso-8859-1')"
    with _open_raw(path) as raw:
        stream = _binary_stream(raw)
        offset = stream.tell()  # past a byte-order mark; counts decompressed bytes for gzip
        for number, line in enumerate(stream, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as err:
                where = f"byte {offset + err.start} (line {number})"
                return DataError(f"{path}: not valid {encoding} at {where}; {advice}")
            offset += len(line)
    return DataError(f"{path}: not valid {encoding}; {advice}")


def _rating_rows(
    path: Path,
    rows: Iterator[tuple[int, list[str]]],
    separator: str,
    min_rating: float | None,
) -> Interactions:
    """(line number, fields) rows of ``user item rating timestamp`` -> Interactions."""
    users: list[str] = []
    items: list[str] = []
    times = _Times(path)
    ratings: list[float] = []
    for number, fields in rows:
        if len(fields) != 4:
            problem = f"expected 4 fields separated by {separator}, got {len(fields)}"
            raise MalformedRowError(path, number, problem)
        user, item = _ids(path, number, fields[0], fields[1])
        users.append(user)
        items.append(item)
        ratings.append(_parse_rating(path, number, fields[2]))
        times.add(number, _parse_number_time(path, number, fields[3]))
    return _build(path, users, items, times.array(), ratings, min_rating)


def _csv_rows(path: Path, lines: Iterator[str], sep: str) -> Iterator[tuple[int, list[str]]]:
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
        if not _is_blank(row):
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
