"""Named datasets and raw files -> the reader that parses them.

A dataset argument is either a registered name (``ml-1m``, ``ml-100k``,
``amazon-beauty``), resolved inside a data directory, or the path of a file whose format
is given or recognised from its name.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hymoerec.data import readers
from hymoerec.data.errors import DataError
from hymoerec.data.interactions import Interactions

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


def guess_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".dat"):
        return "movielens-dat"
    if name == "u.data":
        return "movielens-100k"
    if name.startswith("reviews_") and (name.endswith(".json") or name.endswith(".json.gz")):
        return "amazon-reviews"
    if name.startswith("ratings_") and name.endswith(".csv"):
        return "amazon-ratings"
    if name.endswith(".txt"):
        return "sequences"
    if name.endswith((".csv", ".tsv", ".parquet")):
        return "table"
    raise DataError(f"{path}: cannot tell the file's format from its name; pass --format")


def resolve(
    dataset: str,
    data_directory: str | Path | None = None,
    format: str | None = None,
    options: dict[str, Any] | None = None,
) -> Source:
    """A registered dataset name or a file path -> the Source to read."""
    spec = DATASETS.get(dataset)
    if spec is None:
        path = Path(dataset)
        if not path.is_file():
            known = ", ".join(DATASETS)
            raise DataError(f"{dataset!r} is neither a known dataset ({known}) nor a file")
        fmt = format or guess_format(path)
        if fmt not in READERS:
            raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(READERS)}")
        check_options(fmt, dict(options or {}), str(path))
        return Source(path.stem, path, fmt, dict(options or {}))

    if format is not None:
        raise DataError(f"--format applies to a file, not to the named dataset {spec.name!r}")
    directory = data_dir(data_directory) / spec.name
    for candidate in spec.candidates:
        path = directory / candidate.filename
        if path.is_file():
            chosen = {**candidate.options, **(options or {})}  # given options win
            check_options(candidate.format, chosen, f"dataset {spec.name} ({path})")
            return Source(spec.name, path, candidate.format, chosen, spec.max_len)
    wanted = " or ".join(c.filename for c in spec.candidates)
    raise DataError(
        f"dataset {spec.name!r}: none of its files found; put {wanted} in {directory}/ "
        f"(officially published at {spec.origin}). The data directory comes from --data-dir, "
        f"else ${DATA_DIR_ENV}, else ./data."
    )
