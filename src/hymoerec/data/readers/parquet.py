"""Parquet tables: typed columns, read with Arrow, checked column by column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hymoerec.data.errors import DataError
from hymoerec.data.interactions import Ids
from hymoerec.data.readers.checked import column_index
from hymoerec.data.readers.fields import (
    INT64,
    Columns,
    Times,
    first_line,
    integral_if_possible,
    parse_any_time,
    parse_rating,
)
from hymoerec.data.readers.files import open_raw


def read_parquet(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None,
    rating_col: str | None,
) -> Columns:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"reading the Parquet file {path} needs pyarrow: pip install 'hymoerec[parquet]'"
        ) from None
    with open_raw(path):  # a missing file is a DataError, as for the text readers
        pass
    wanted = [name for name in (user_col, item_col, time_col, rating_col) if name is not None]
    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable Parquet file: {err}") from None
    for name in wanted:
        column_index(path, names, name)
    try:
        table = pq.read_table(path, columns=list(dict.fromkeys(wanted)))
    except (OSError, ValueError, NotImplementedError) as err:  # Arrow errors derive from these
        raise DataError(f"{path}: not a readable Parquet file: {first_line(err)}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no interactions (the file is empty)")
    user = _ids(path, table.column(user_col), user_col)
    item = _ids(path, table.column(item_col), item_col)
    if time_col is None:
        timestamp = np.arange(table.num_rows, dtype=np.int64)
    else:
        timestamp = _times(path, table.column(time_col), time_col)
    rating = None
    if rating_col is not None:
        rating = _ratings(path, table.column(rating_col), rating_col)
    return Columns(user, item, timestamp, rating)


def _no_nulls(path: Path, column: Any, name: str) -> None:
    if column.null_count:
        import pyarrow.compute as pc

        row = pc.index(column.is_null(), True).as_py() + 1
        raise DataError(f"{path}: column {name!r} is null in row {row}")


def _ids(path: Path, column: Any, name: str) -> Ids:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (
        pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        raise DataError(f"{path}: column {name!r} has type {column.type}, not integer or text ids")
    _no_nulls(path, column, name)
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    encoded = pc.dictionary_encode(text).unify_dictionaries().combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    dictionary = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=str)
    if (dictionary == "").any():
        row = int(np.argmax(dictionary[codes] == "")) + 1
        raise DataError(f"{path}: column {name!r} is an empty id in row {row}")
    return Ids.from_dictionary(codes, dictionary)


def _times(path: Path, column: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    _no_nulls(path, column, name)
    kind = column.type
    if pa.types.is_integer(kind):
        values = column.to_numpy()
        if values.dtype == np.uint64 and values.size and values.max() > INT64[1]:
            row = int(np.argmax(values > INT64[1])) + 1
            problem = f"timestamp {values[row - 1]} in row {row} does not fit in int64"
            raise DataError(f"{path}: column {name!r}: {problem}")
        return np.asarray(values, dtype=np.int64)
    if pa.types.is_floating(kind):
        return integral_if_possible(path, np.asarray(column.to_numpy(), dtype=np.float64))
    if pa.types.is_timestamp(kind):
        seconds = column.cast(pa.timestamp("s", tz=kind.tz), safe=False)  # floors sub-seconds
        return np.asarray(seconds.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_date32(kind):
        return np.asarray(column.cast(pa.int32()).to_numpy(), dtype=np.int64) * 86_400
    if pa.types.is_date64(kind):
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64) // 1000
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        times = Times(path)
        for row, text in enumerate(column.to_pylist(), 1):
            times.add(row, parse_any_time(path, row, text))
        return times.array()
    raise DataError(f"{path}: column {name!r} has type {kind}, not a timestamp")


def _ratings(path: Path, column: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    _no_nulls(path, column, name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        numbers = np.asarray(column.to_numpy(), dtype=np.float64)
        if not np.isfinite(numbers).all():
            row = int(np.argmin(np.isfinite(numbers))) + 1
            raise DataError(f"{path}: column {name!r} is not a finite number in row {row}")
        return numbers
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{path}: column {name!r} has type {column.type}, not a rating")
    ratings = [parse_rating(path, row, str(v)) for row, v in enumerate(column.to_pylist(), 1)]
    return np.asarray(ratings, dtype=np.float64)
