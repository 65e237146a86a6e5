"""Files the project writes and reads back: written atomically, checksummed, verified.

Every artifact (a run's weights and config, a checkpoint, a cached array) is written to a
temporary file beside its target and renamed into place, so a crash or a full disk never
leaves a half-written file under the real name, and the temporary file is removed when the
write fails. Its SHA-256 is recorded when it is written (a directory's ``checksums.json``,
a cache entry's ``meta.json``) and compared when it is read, so a truncated file or a
flipped byte is reported, never used. Failures are :class:`ArtifactError`: one line that
names the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

CHECKSUMS = "checksums.json"  # a run directory's {file name: sha256}


class ArtifactError(ValueError):
    """A saved file is missing, unreadable, corrupt or cannot be written; names the file."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk, rename it to
    ``path``. On any failure (a full disk, an interrupt) the temporary file is removed and
    ``path`` keeps its previous content; an OSError becomes an ArtifactError naming ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ArtifactError(f"{path}: cannot write: {describe(error)}") from None
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text.encode()))


def describe(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def write_checksums(directory: Path, names: Iterable[str]) -> None:
    """Record the SHA-256 of each named file of ``directory`` that exists."""
    sums = {name: sha256_file(directory / name) for name in names if (directory / name).is_file()}
    write_text_atomic(directory / CHECKSUMS, json.dumps(sums, indent=2, sort_keys=True))


def read_checksums(directory: Path) -> dict[str, str] | None:
    """The recorded checksums, or None for a directory written before they were recorded."""
    path = directory / CHECKSUMS
    if not path.is_file():
        return None
    try:
        sums = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: unreadable ({reason(error)})") from None
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise ArtifactError(f"{path}: not a mapping of file names to checksums")
    return sums


def verify(path: Path, expected: str | None) -> None:
    """Compare ``path``'s SHA-256 with the one recorded when it was written."""
    if expected is None:
        return
    try:
        actual = sha256_file(path)
    except OSError as error:
        raise ArtifactError(f"{path}: cannot read: {describe(error)}") from None
    if actual != expected:
        raise ArtifactError(
            f"{path}: checksum mismatch: the file changed or was damaged after it was written"
        )


def verify_in(directory: Path, name: str) -> None:
    """Verify ``directory/name`` against the directory's recorded checksums, if any."""
    sums = read_checksums(directory)
    if sums is None:
        return
    if name not in sums:
        raise ArtifactError(f"{directory / name}: no checksum recorded in {CHECKSUMS}")
    verify(directory / name, sums[name])


def reason(error: BaseException) -> str:
    """The first line of an error's message, short enough for a one-line report."""
    if isinstance(error, OSError):
        return describe(error)
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file holding a mapping; anything else is an ArtifactError naming the file."""
    import yaml

    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ArtifactError(f"{path}: not a readable YAML file ({reason(error)})") from None
    if not isinstance(values, dict):
        raise ArtifactError(f"{path}: expected a mapping of options, got {type(values).__name__}")
    return values
