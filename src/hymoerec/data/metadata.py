"""Item metadata (titles, genres) shown beside recommendations.

Metadata is optional: a dataset without a metadata file still trains, evaluates and
serves, and recommendations then carry raw item ids only. Known layouts:

- MovieLens-1M ``movies.dat``: ``MovieID::Title::Genres`` with ``|``-separated genres;
- MovieLens-100K ``u.item``: ``id|title|release date|video date|url|19 genre flags``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hymoerec.data.errors import DataError, MalformedRowError
from hymoerec.data.registry import Source

log = logging.getLogger(__name__)

ItemMetadata = dict[str, dict[str, Any]]  # external item id -> fields

_100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def _lines(path: Path, encodings: tuple[str, ...]) -> list[str]:
    """The file's lines in the first of ``encodings`` that decodes it."""
    data = path.read_bytes()
    for encoding in encodings:
        try:
            return data.decode(encoding).removeprefix("\ufeff").splitlines()
        except UnicodeDecodeError as error:
            problem = error.reason
    raise DataError(f"{path}: not {' or '.join(encodings)} text ({problem})")


def read_movielens_movies(path: Path) -> ItemMetadata:
    """``movies.dat``: ``MovieID::Title::Genres``. GroupLens ships it in ISO-8859-1; a
    UTF-8 copy (as some mirrors re-encode it) is read as UTF-8."""
    metadata: ItemMetadata = {}
    for number, line in enumerate(_lines(path, ("utf-8", "iso-8859-1")), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3 or not fields[0].strip():
            raise MalformedRowError(path, number, "expected MovieID::Title::Genres")
        item, title, genres = (f.strip() for f in fields)
        metadata[item] = {"title": title, "genres": [g for g in genres.split("|") if g]}
    return metadata


def read_movielens_100k_items(path: Path) -> ItemMetadata:
    """``u.item`` (ISO-8859-1): id, title, dates, URL and 19 genre flags, ``|``-separated."""
    metadata: ItemMetadata = {}
    for number, line in enumerate(_lines(path, ("iso-8859-1",)), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) != 5 + len(_100K_GENRES) or any(f not in ("0", "1") for f in flags):
            raise MalformedRowError(path, number, "expected id|title|date|video|url|19 flags")
        genres = [g for g, flag in zip(_100K_GENRES, flags, strict=True) if flag == "1"]
        metadata[fields[0].strip()] = {"title": fields[1].strip(), "genres": genres}
    return metadata


# dataset name, or a file's format -> (file beside the interactions, its reader)
METADATA_FILES: dict[str, tuple[str, Callable[[Path], ItemMetadata]]] = {
    "ml-1m": ("movies.dat", read_movielens_movies),
    "ml-100k": ("u.item", read_movielens_100k_items),
    "movielens-dat": ("movies.dat", read_movielens_movies),
    "movielens-100k": ("u.item", read_movielens_100k_items),
}


def load_metadata(source: Source) -> ItemMetadata:
    """The metadata of ``source``'s dataset, or {} when it has none. Titles are a nicety:
    a metadata file that cannot be read is reported as a warning and skipped, so it never
    stops training or serving."""
    known = METADATA_FILES.get(source.name) or METADATA_FILES.get(source.format)
    if known is None:
        return {}
    filename, reader = known
    path = source.path.parent / filename
    if not path.is_file():
        return {}
    try:
        return reader(path)
    except (DataError, OSError) as error:
        log.warning("warning: item metadata not used, recommendations show ids only: %s", error)
        return {}
