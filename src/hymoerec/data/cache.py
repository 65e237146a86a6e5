"""Prepared datasets cached on disk, keyed by the source file's checksum and the options.

A cache entry is a directory of ``.npy`` arrays (loaded memory-mapped) plus ``meta.json``,
which records each array's SHA-256; loading verifies them, so a truncated or damaged
entry is reported by name rather than used. An entry is written to a temporary directory
named after the writing process and renamed into place, so a reader never sees a
half-written entry; temporary directories of processes that died mid-write are removed
by the next write to the same cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hymoerec.artifacts import ArtifactError, describe, reason, sha256_file, verify
from hymoerec.data.errors import DataError
from hymoerec.data.protocol import IdMap, ProtocolConfig, SequenceData, apply_protocol
from hymoerec.data.registry import Source, resolve

CACHE_DIR_ENV = "HYMOEREC_CACHE"
# bump when the output changes for the same inputs (2: ids are stripped of whitespace)
FORMAT_VERSION = 2
_ARRAYS = ("offsets", "items", "users", "item_ids")
_TMP_TAG = ".tmp-"  # ".{entry}.tmp-{pid}-{random}": a write in progress by process pid


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The cache root: an explicit option, else $HYMOEREC_CACHE, else ~/.cache/hymoerec."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "hymoerec"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    try:
        return sha256_file(path, chunk)
    except OSError as error:
        raise DataError(f"{path}: cannot read: {describe(error)}") from None


def cache_key(source: Source, protocol: ProtocolConfig) -> str:
    description = {
        "version": FORMAT_VERSION,
        "sha256": file_sha256(source.path),
        "format": source.format,
        "arguments": source.arguments(),  # every reader option, defaults and suffix included
        "protocol": dataclasses.asdict(protocol),
    }
    blob = json.dumps(description, sort_keys=True, default=str).encode()
    return f"{source.name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def save(data: SequenceData, directory: Path, meta: dict[str, object]) -> None:
    """Write ``data`` to ``directory`` atomically (temporary directory + rename)."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(directory)
        prefix = f".{directory.name}{_TMP_TAG}{os.getpid()}-"
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=directory.parent))
    except OSError as error:
        raise ArtifactError(f"{directory}: cannot write: {describe(error)}") from None
    try:
        arrays = {
            "offsets": data.offsets,
            "items": data.items,
            "users": data.users.external,
            "item_ids": data.item_ids.external,
        }
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        sums = {f"{name}.npy": sha256_file(tmp / f"{name}.npy") for name in arrays}
        (tmp / "meta.json").write_text(json.dumps({**meta, "sha256": sums}, indent=2, default=str))
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / "meta.json").is_file():  # not a concurrent writer's entry
                raise
            shutil.rmtree(tmp)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            raise ArtifactError(f"{directory}: cannot write: {describe(error)}") from None
        raise


def _remove_orphans(directory: Path) -> None:
    """Remove temporary directories left for ``directory`` by writers that no longer run
    (killed mid-write). A process id is only meaningful on this machine, which is where a
    cache is normally written from."""
    for stale in directory.parent.glob(f".{directory.name}{_TMP_TAG}*"):
        pid = stale.name[len(directory.name) + len(_TMP_TAG) + 1 :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def load(directory: Path) -> SequenceData:
    """A cache entry, verified against the checksums in its meta.json (entries written
    before checksums were recorded load unverified)."""
    meta_path = directory / "meta.json"
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        sums = meta.get("sha256", {})
        if not isinstance(sums, dict):
            raise ValueError("'sha256' is not a mapping")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise ArtifactError(f"{meta_path}: unreadable ({reason(error)})") from None
    arrays = {}
    for name in _ARRAYS:
        path = directory / f"{name}.npy"
        if not path.is_file():
            raise ArtifactError(f"{path}: missing from the prepared dataset")
        verify(path, sums.get(f"{name}.npy"))
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as error:
            raise ArtifactError(f"{path}: not a readable array ({reason(error)})") from None
    offsets, items = arrays["offsets"], arrays["items"]
    users, item_ids = np.asarray(arrays["users"]), np.asarray(arrays["item_ids"])
    consistent = (
        offsets.ndim == items.ndim == users.ndim == item_ids.ndim == 1
        and offsets.dtype.kind == "i"
        and items.dtype.kind == "i"
        and len(offsets) == len(users) + 1
        and len(offsets) > 0
        and offsets[0] == 0
        and offsets[-1] == len(items)
        and (len(items) == 0 or (items.min() > 0 and items.max() <= len(item_ids)))
    )
    if not consistent:
        raise ArtifactError(f"{directory}: the prepared dataset's arrays do not fit together")
    return SequenceData(
        offsets=offsets,
        items=items,
        users=IdMap(users, offset=0),
        item_ids=IdMap(item_ids, offset=1),
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
        try:
            return load(directory)
        except ArtifactError as error:
            raise ArtifactError(f"{error}; delete {directory} to prepare it again") from None
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
