"""Opening a data file: missing files, gzip, a UTF-8 byte-order mark, decoding errors and
the progress bar, the same for both reading paths."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hymoerec.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
_PROGRESS_EVERY = 4096  # lines between progress-bar updates; keeps the hot loop cheap


@contextmanager
def open_raw(path: Path) -> Iterator[io.BufferedReader]:
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the context manager below
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot open ({err.strerror or err})") from None
    with raw:
        yield raw


def binary_stream(raw: io.BufferedReader) -> io.BufferedReader | gzip.GzipFile:
    """The file's bytes, decompressed if gzip, past a UTF-8 byte-order mark if any."""
    stream: io.BufferedReader | gzip.GzipFile = raw
    if raw.peek(2)[:2] == GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    if stream.peek(3)[:3] == UTF8_BOM:
        stream.read(3)
    return stream


def is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    with open_raw(path) as raw:
        return raw.peek(4)[:4] == PARQUET_MAGIC


def progress_bar(path: Path, progress: bool) -> Any:
    """A bar over the file's bytes on disk, or None."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=path.name)


@contextmanager
def text_lines(path: Path, encoding: str, progress: bool) -> Iterator[Iterator[str]]:
    """Every line of the file, blank ones included, with its line ending kept.

    Lines end at ``\\n`` only, so line numbers match a text editor's; callers strip
    ``\\r\\n``. Decoding and gzip errors become :class:`DataError` naming the file.
    """
    with open_raw(path) as raw:
        bar = progress_bar(path, progress)
        try:
            with io.TextIOWrapper(binary_stream(raw), encoding=encoding, newline="\n") as text:
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
        raise decode_error(path, encoding) from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read: {err}") from None


def decode_error(path: Path, encoding: str) -> DataError:
    """Locate the first undecodable line by re-reading the file; only runs on failure."""
    advice = "pass encoding= with the file's encoding (e.g. encoding='iso-8859-1')"
    with open_raw(path) as raw:
        stream = binary_stream(raw)
        offset = stream.tell()  # past a byte-order mark; counts decompressed bytes for gzip
        for number, line in enumerate(stream, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as err:
                where = f"byte {offset + err.start} (line {number})"
                return DataError(f"{path}: not valid {encoding} at {where}; {advice}")
            offset += len(line)
    return DataError(f"{path}: not valid {encoding}; {advice}")
