"""Named datasets and raw files -> the reader that parses them.

A dataset argument is either a registered name (``ml-1m``, ``ml-100k``,
``amazon-beauty``), resolved inside a data directory, or the path of a file whose format
is given or recognised from its content (never from its name alone, which can mislead).
"""

from __future__ import annotations

import csv
import gzip
import inspect
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hymoerec.data import readers
from hymoerec.data.errors import DataError
from hymoerec.data.interactions import Interactions

log = logging.getLogger(__name__)
DATA_DIR_ENV = "HYMOEREC_DATA"
DEFAULT_DATA_DIR = Path("data")

# Format name -> reader. The format name is part of the cache key.
READERS: dict[str, Callable[..., Interactions]] = {
    "movielens-dat": readers.read_movielens_dat,
    "movielens-100k": readers.read_movielens_100k,
    "sequences": readers.read_sequences,
    "amazon-ratings": readers.read_amazon_ratings,
    "amazon-reviews": readers.read_amazon_reviews,
    "table": readers.read_table,
}


@dataclass(frozen=True)
class Source:
    """One raw file and how to read it."""

    name: str  # dataset name, or the file's stem for a plain path
    path: Path
    format: str
    options: dict[str, Any] = field(default_factory=dict)
    max_len: int = 50  # default maximum history length for models on this dataset

    def read(self, progress: bool = False) -> Interactions:
        return READERS[self.format](self.path, **self.options, progress=progress)

    def arguments(self) -> dict[str, Any]:
        """Every argument the reader is called with, defaults included: with the content's
        checksum and the file's suffixes (which pick a table's separator), all that decides
        what :meth:`read` returns."""
        parameters = _reader_options(self.format)
        values = {name: p.default for name, p in parameters.items() if p.default is not p.empty}
        values.update(self.options)
        values["suffixes"] = [suffix.lower() for suffix in self.path.suffixes]
        return values


# options set internally, never from the command line
_INTERNAL = ("path", "progress")


def _reader_options(format: str) -> dict[str, inspect.Parameter]:
    parameters = inspect.signature(READERS[format]).parameters
    return {name: p for name, p in parameters.items() if name not in _INTERNAL}


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def check_options(format: str, options: dict[str, Any], where: str) -> None:
    """Refuse an option the format's reader does not take, or a missing required one, with
    the command-line spelling of each."""
    accepted = _reader_options(format)
    unknown = [name for name in options if name not in accepted]
    if unknown:
        takes = [_flag(name) for name in accepted if name not in ("encoding", "sep")]
        listed = ", ".join(takes) if takes else "no options"
        names = ", ".join(_flag(name) for name in unknown)
        raise DataError(f"{where}: {names} does not apply to format {format} (it takes {listed})")
    missing = [
        _flag(name)
        for name, p in accepted.items()
        if p.default is p.empty and p.kind is not p.VAR_KEYWORD and name not in options
    ]
    if missing:
        raise DataError(f"{where}: format {format} needs {' and '.join(missing)}")


@dataclass(frozen=True)
class _Candidate:
    filename: str
    format: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    candidates: tuple[_Candidate, ...]  # first existing file wins
    max_len: int  # the paper's maximum history length
    origin: str  # where the public files are officially published


# Default history length of a file dataset, by format: MovieLens users have long
# histories (the paper uses 200 for ML-1M), review datasets short ones (50 for Beauty).
DEFAULT_MAX_LEN = 50
FORMAT_MAX_LEN = {"movielens-dat": 200, "movielens-100k": 200}

_BEAUTY_TABLE = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp", "sep": "\t"}

DATASETS: dict[str, DatasetSpec] = {
    "ml-1m": DatasetSpec(
        "ml-1m",
        (_Candidate("ratings.dat", "movielens-dat"), _Candidate("sequences.txt", "sequences")),
        max_len=200,
        origin="https://grouplens.org/datasets/movielens/1m/ (ml-1m.zip)",
    ),
    "ml-100k": DatasetSpec(
        "ml-100k",
        (_Candidate("u.data", "movielens-100k"),),
        max_len=200,
        origin="https://grouplens.org/datasets/movielens/100k/ (ml-100k.zip)",
    ),
    "amazon-beauty": DatasetSpec(
        "amazon-beauty",
        (
            _Candidate("reviews_Beauty_5.json.gz", "amazon-reviews"),
            _Candidate("reviews_Beauty_5.json", "amazon-reviews"),
            _Candidate("interactions.tsv", "table", _BEAUTY_TABLE),
            _Candidate("ratings_Beauty.csv", "amazon-ratings"),
        ),
        max_len=50,
        origin="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html "
        "(Amazon Review Data 2014, Beauty)",
    ),
}


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: an explicit option, else $HYMOEREC_DATA, else ./data."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


# --------------------------------------------------------------- recognising a file's format

# usual column names, compared case-insensitively: a file must have exactly one of each
USUAL_COLUMNS = {
    "user_col": ("user_id", "userid", "user", "uid", "reviewerid", "customer_id", "visitorid"),
    "item_col": ("item_id", "itemid", "item", "iid", "movie_id", "movieid", "product_id", "asin"),
    "time_col": ("timestamp", "time", "ts", "datetime", "date", "unixreviewtime", "event_time"),
    "rating_col": ("rating", "ratings", "score", "overall", "stars"),
}


_SNIFF_LINES = 50  # lines looked at to recognise a format
_SEPARATORS = (",", "\t", ";", "|")


def _head(path: Path, lines: int = _SNIFF_LINES) -> tuple[bytes, list[str]]:
    """The first bytes of the file and its first non-blank lines (gzip opened, read as
    latin-1, which decodes any byte: only the layout matters here)."""
    try:
        with open(path, "rb") as raw:
            start = raw.read(4)
            raw.seek(0)
            stream: Any = gzip.GzipFile(fileobj=raw) if start[:2] == b"\x1f\x8b" else raw
            head = []
            for line in stream:
                text = line.decode("latin-1").strip().removeprefix("ï»¿")  # a UTF-8 BOM
                if text:
                    head.append(text)
                if len(head) == lines:
                    break
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read: {error}") from None
    return start, head


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _rating_row(row: list[str]) -> bool:
    """``user item rating timestamp``: a small number, then a large integer."""
    return (
        len(row) == 4
        and _number(row[2])
        and 0 <= float(row[2]) <= 10
        and _integer(row[3])
        and int(row[3]) >= 10_000_000
    )


def _ratings_layout(rows: list[list[str]]) -> bool:
    """Rows of ``user item rating timestamp``: the first and at least half of them (a
    malformed row further down is left for the reader to report with its line)."""
    fits = [_rating_row(row) for row in rows]
    return fits[0] and 2 * sum(fits) >= len(fits)


def _fields(line: str, sep: str) -> list[str]:
    """The fields of one line; a line csv cannot split counts as a single field (the
    reader reports it with its line number if the format is then chosen)."""
    with readers.csv_field_limit():
        try:
            return [field.strip() for field in next(csv.reader([line], delimiter=sep), [])]
        except csv.Error:
            return [line]


def _header_separator(lines: list[str]) -> str | None:
    """The separator of a delimited file whose first line is a header, if the lines look
    like one: the header's width on most lines (a malformed row further down is left for
    the reader to report with its line), and a header that names at least one usual column
    or holds a word above a column of numbers."""
    if len(lines) < 2:
        return None
    for sep in _SEPARATORS:
        header, *body = (_fields(line, sep) for line in lines)
        body = [row for row in body if len(row) == len(header)]
        if len(header) == 1 or 2 * len(body) < len(lines) - 1 or not all(header):
            continue
        usual = any(name.lower() in names for name in header for names in USUAL_COLUMNS.values())
        numbers_below_words = any(
            not _number(name) and all(_number(row[at]) for row in body)
            for at, name in enumerate(header)
        )
        if usual or numbers_below_words:
            return sep
    return None


def sniff_format(path: Path) -> str:
    """The format of ``path``, recognised from its content (the name can mislead: a
    ``u.data`` copy named ``.txt`` is ratings, not sequences). A file that fits no format,
    or more than one, is an error asking for ``--format``."""
    start, lines = _head(path)
    if start == b"PAR1":
        return "table"
    if not lines:
        raise DataError(f"{path}: no interactions (the file is empty)")
    unsure = (
        f"{path}: cannot tell the file's format from its content; pass --format "
        f"({', '.join(READERS)})"
    )
    if lines[0].startswith("{"):
        return "amazon-reviews"
    if all("::" in line for line in lines):
        if _ratings_layout([line.split("::") for line in lines]):
            return "movielens-dat"
        raise DataError(unsure)
    if _header_separator(lines) is not None:
        return "table"
    if all("," in line for line in lines):
        if _ratings_layout([line.split(",") for line in lines]):
            return "amazon-ratings"
        raise DataError(unsure)
    rows = [line.split() for line in lines]
    if _ratings_layout(rows):
        return "movielens-100k"
    # user item pairs, or a user and their items per line (lines of 3 or 4 fields alike
    # could as well be a table without a header: not certain, so asked)
    widths = {len(row) for row in rows}
    if widths == {2} or len(widths) > 1 or min(widths) >= 5:
        return "sequences"
    raise DataError(unsure)


# ------------------------------------------------------------------ columns of a table


def _table_columns(path: Path, sep: str | None, encoding: str | None) -> tuple[list[str], str]:
    """The column names of a table file and its separator ("" for Parquet)."""
    start, lines = _head(path, 2)
    if start == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"reading the Parquet file {path} needs pyarrow: pip install 'hymoerec[parquet]'"
            ) from None
        try:
            return list(pq.read_schema(path).names), ""
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: not a readable Parquet file: {error}") from None
    if not lines:
        raise DataError(f"{path}: no interactions (the file is empty)")
    if sep is None:
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
        suffix = suffixes[-1] if suffixes else ""
        sep = {".csv": ",", ".tsv": "\t", ".tab": "\t"}.get(suffix) or _header_separator(lines)
    if sep is None:
        raise DataError(f"{path}: cannot tell the field separator; pass --sep")
    header = lines[0].encode("latin-1").decode(encoding or "utf-8", errors="replace")
    return _fields(header, sep), sep


def table_options(path: Path, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` completed with the columns and separator of a table file: columns not
    given are found under their usual names; a column that cannot be found, or found twice,
    is an error naming the option and the file's columns."""
    names, sep = _table_columns(path, given.get("sep"), given.get("encoding"))
    options = dict(given)
    if sep:
        options["sep"] = sep
    lowered = {name.lower(): name for name in names}
    wanted = ["user_col", "item_col", "time_col"]
    if given.get("min_rating") is not None:
        wanted.append("rating_col")
    for key in wanted:
        if options.get(key) is not None:
            continue
        found = [lowered[usual] for usual in USUAL_COLUMNS[key] if usual in lowered]
        flag = "--" + key.replace("_", "-")
        columns = ", ".join(repr(name) for name in names)
        if not found and key == "time_col":
            log.warning("%s: no time column found; the file's row order is the order", path)
            options[key] = ""
            continue
        if len(found) != 1:
            problem = "several usual names" if found else "no usual name"
            hint = " (or --time-col '' to keep the file's order)" if key == "time_col" else ""
            raise DataError(
                f"{path}: {problem} for the {key.removesuffix('_col')} column among "
                f"{columns}; pass {flag}{hint}"
            )
        options[key] = found[0]
    if options.get("time_col") == "":
        options["time_col"] = None  # no time column: the file's order is the order
    return options


# ------------------------------------------------------------------------------ resolve


def resolve(
    dataset: str,
    data_directory: str | Path | None = None,
    format: str | None = None,
    options: dict[str, Any] | None = None,
) -> Source:
    """A registered dataset name or a file path -> the Source to read.

    ``options`` are reading options (``user_col``, ``min_rating``, ``encoding`` ...); one
    the format cannot honour is an error, never ignored. A named dataset's files have a
    known format and layout, so only ``min_rating`` and ``encoding`` apply to it."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    if format is not None and format not in READERS:
        raise DataError(f"unknown format {format!r}; expected one of {', '.join(READERS)}")
    spec = DATASETS.get(dataset)
    if spec is None:
        path = Path(dataset)
        if not path.is_file():
            known = ", ".join(DATASETS)
            raise DataError(f"{dataset!r} is neither a known dataset ({known}) nor a file")
        fmt = format or sniff_format(path)
        if fmt == "table":
            given = table_options(path, given)
        check_options(fmt, given, str(path))
        return Source(path.stem, path, fmt, given, FORMAT_MAX_LEN.get(fmt, DEFAULT_MAX_LEN))

    fixed = sorted(set(given) - {"min_rating", "encoding"}) + (["format"] if format else [])
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise DataError(
            f"{flags}: {spec.name} is a named dataset whose files have a known layout; "
            f"these options are for files given by path"
        )
    directory = data_dir(data_directory) / spec.name
    for candidate in spec.candidates:
        path = directory / candidate.filename
        if path.is_file():
            merged = {**candidate.options, **given}  # given options win
            check_options(candidate.format, merged, f"dataset {spec.name} ({path})")
            return Source(spec.name, path, candidate.format, merged, spec.max_len)
    wanted = " or ".join(c.filename for c in spec.candidates)
    raise DataError(
        f"dataset {spec.name!r}: none of its files found; put {wanted} in {directory}/ "
        f"(officially published at {spec.origin}). The data directory comes from --data-dir, "
        f"else ${DATA_DIR_ENV}, else ./data."
    )
