"""Readers from raw interaction files to :class:`Interactions`, one function per format.

Every reader keeps the file's row order and the ids exactly as written; the protocol
sorts later (stably). Gzip-compressed text is detected by its magic bytes, so any text
reader also takes a ``.gz`` file. Errors name the file and, for a bad row, the 1-based
line number a text editor shows (blank lines count but are skipped).

Ids are read with the whitespace around them removed, in every format (`` 4`` and ``4``
are one user), and a field shown in an error is cut to a few dozen characters.
Timestamps are int64 when every one is an integer, else float64; an integer that int64
cannot hold, or one too large for float64 to order beside fractional timestamps, is an
error at its line rather than a silent change of order.

Two paths give one result. A text file is first read by Arrow into typed columns
(:mod:`~hymoerec.data.readers.columnar`): fast, and the ids arrive dictionary-encoded.
Where that path cannot promise the result of reading the file line by line (a
malformed row, a fractional timestamp, quoted CSV fields...), the file is read line by
line in Python (:mod:`~hymoerec.data.readers.checked`), which also finds the first bad
row and names its line. Parquet files are read with Arrow
(:mod:`~hymoerec.data.readers.parquet`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from pathlib import Path

from hymoerec.data.errors import DataError
from hymoerec.data.interactions import Interactions
from hymoerec.data.readers import checked
from hymoerec.data.readers.fields import Columns, build, csv_field_limit, first_line
from hymoerec.data.readers.files import is_parquet
from hymoerec.data.readers.parquet import read_parquet
from hymoerec.data.readers.scan import Declined

__all__ = [
    "csv_field_limit",
    "read_amazon_ratings",
    "read_amazon_reviews",
    "read_movielens_100k",
    "read_movielens_dat",
    "read_sequences",
    "read_table",
]

log = logging.getLogger(__name__)
_LARGE = 64 << 20  # bytes on disk from which reading line by line is worth a message


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
    parsed = _read(path, "movielens_dat", encoding, progress)
    return build(path, parsed, min_rating)


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
    return build(path, _read(path, "movielens_100k", encoding, progress), min_rating)


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
    return build(path, _read(path, "sequences", encoding, progress), None)


def read_amazon_ratings(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    min_rating: float | None = None,
    progress: bool = False,
) -> Interactions:
    """Amazon 2014 ``ratings_<Category>.csv``: ``user,item,rating,timestamp``, no header."""
    path = Path(path)
    return build(path, _read(path, "amazon_ratings", encoding, progress), min_rating)


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
    parsed = _read(path, "amazon_reviews", encoding, progress)
    if parsed.rating is None and min_rating is not None and len(parsed.user):
        raise DataError(f"{path}: min_rating={min_rating} given but no review has 'overall'")
    return build(path, parsed, min_rating)


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
    if is_parquet(path):
        return build(path, read_parquet(path, *columns), min_rating)
    separator = _separator(path, sep)
    parsed = _read(path, "delimited", *columns, separator, encoding, progress)
    return build(path, parsed, min_rating)


def _read(path: Path, reader: str, *arguments: object) -> Columns:
    """The columnar reader's columns, or the line-by-line reader's where it declines."""
    # imported here, not at the top: commands that read no file start without pyarrow
    from hymoerec.data.readers import columnar

    slow: Callable[..., Columns] = getattr(checked, reader)
    fast: Callable[..., Columns] = getattr(columnar, reader)
    try:
        return fast(path, *arguments)
    except MemoryError:
        raise
    except (Declined, columnar.pa.ArrowException, ValueError, OSError, EOFError, zlib.error) as why:
        # said where it costs minutes: a large file read line by line
        large = path.is_file() and path.stat().st_size > _LARGE
        level = logging.INFO if large else logging.DEBUG
        log.log(level, "%s: read line by line (slower): %s", path, first_line(why))
    return slow(path, *arguments)


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
