"""Prepared datasets cached on disk, keyed by the source file's checksum and the options.

A cache entry is a directory of ``.npy`` arrays (loaded memory-mapped) plus ``meta.json``.
It is written to a temporary directory and renamed into place, so a reader never sees a
half-written entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hymoerec.data.protocol import IdMap, ProtocolConfig, SequenceData, apply_protocol
from hymoerec.data.registry import Source, resolve

CACHE_DIR_ENV = "HYMOEREC_CACHE"
FORMAT_VERSION = 1  # bump when the protocol's output changes for the same inputs
_ARRAYS = ("offsets", "items", "users", "item_ids")


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The cache root: an explicit option, else $HYMOEREC_CACHE, else ~/.cache/hymoerec."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "hymoerec"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_key(source: Source, protocol: ProtocolConfig) -> str:
    description = {
        "version": FORMAT_VERSION,
        "sha256": file_sha256(source.path),
        "format": source.format,
        "options": source.options,
        "protocol": dataclasses.asdict(protocol),
    }
    blob = json.dumps(description, sort_keys=True, default=str).encode()
    return f"{source.name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def save(data: SequenceData, directory: Path, meta: dict[str, object]) -> None:
    """Write ``data`` to ``directory`` atomically (temporary directory + rename)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        np.save(tmp / "offsets.npy", data.offsets)
        np.save(tmp / "items.npy", data.items)
        np.save(tmp / "users.npy", data.users.external)
        np.save(tmp / "item_ids.npy", data.item_ids.external)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / "meta.json").is_file():  # not a concurrent writer's entry
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(directory: Path) -> SequenceData:
    arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    return SequenceData(
        offsets=arrays["offsets"],
        items=arrays["items"],
        users=IdMap(np.asarray(arrays["users"]), offset=0),
        item_ids=IdMap(np.asarray(arrays["item_ids"]), offset=1),
    )


def prepare(
    source: Source,
    protocol: ProtocolConfig | None = None,
    cache_root: str | Path | None = None,
    use_cache: bool = True,
) -> SequenceData:
    """Read, filter and split ``source``, or load the cached result of doing so."""
    protocol = protocol or ProtocolConfig()
    directory = cache_dir(cache_root) / cache_key(source, protocol)
    if use_cache and (directory / "meta.json").is_file():
        return load(directory)
    data = apply_protocol(source.read(), protocol)
    if use_cache:
        meta = {
            "source": str(source.path),
            "format": source.format,
            "options": source.options,
            "protocol": dataclasses.asdict(protocol),
            "version": FORMAT_VERSION,
        }
        save(data, directory, meta)
    return data


def is_cached(source: Source, protocol: ProtocolConfig, cache_root: str | Path | None) -> bool:
    return (cache_dir(cache_root) / cache_key(source, protocol) / "meta.json").is_file()


def load_dataset(
    dataset: str,
    data_directory: str | Path | None = None,
    cache_root: str | Path | None = None,
    protocol: ProtocolConfig | None = None,
    format: str | None = None,
    options: dict[str, object] | None = None,
    use_cache: bool = True,
) -> tuple[Source, SequenceData]:
    """A dataset name or file -> its prepared sequences (from the cache when possible)."""
    source = resolve(dataset, data_directory, format, options)
    return source, prepare(source, protocol, cache_root, use_cache)
