"""One pass over a text file before Arrow reads it, to find what Arrow would read
differently from the line-by-line readers.

Arrow's CSV and JSON readers split and convert a file in C++, but they differ from the
line-by-line readers on some inputs: a lone ``\\r`` ends a row, ``0x10`` is an integer,
a NUL byte is kept in an id. :func:`scan` reads the decompressed bytes once, a block of
whole lines at a time, and raises :class:`Declined` on any of these, so that the file
goes to the line-by-line reader instead. The checks are byte searches that run in C:
one ``memchr`` pass per byte that could matter, and a closer look only in a block that
holds one. Arrow then reads the file itself (natively: calling Python from Arrow's
threads can abort the process at exit), from the offset the scan gives.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from hymoerec.data.readers.fields import csv_field_limit, is_blank
from hymoerec.data.readers.files import binary_stream, open_raw, progress_bar

BLOCK = 1 << 24  # bytes read at a time, and Arrow's block size: a line must fit in one

# Python's str.isspace() characters (str.split() and str.strip() use these)
PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_ASCII_SPACE = " \t\x0b\x0c\x1c\x1d\x1e\x1f"  # ASCII whitespace besides \n and \r
# encodings whose ASCII bytes are ASCII characters, so that byte searches find them
_ENCODINGS = {"utf-8", "iso8859-1", "ascii"}
_HEX = re.compile(rb"0[xX]")
_BLANK_LINE = re.compile(rb"^[ \t\r]*\n", re.MULTILINE)


class Declined(Exception):
    """The columnar reader cannot promise the line-by-line reader's result here."""


@dataclass(frozen=True)
class Rules:
    """What :func:`scan` refuses and counts. Always refused: NUL (NumPy strings drop a
    trailing one) and a ``\\r`` not followed by ``\\n`` (Arrow ends a row there, Python
    does not)."""

    integers: bool = False  # refuse "0x": Arrow reads hexadecimal integers, Python not
    # whitespace-separated formats: the separators; other whitespace is refused, as
    # str.split() would split on it too
    whitespace: str | None = None
    quoted: str | None = None  # CSV with this separator: quotes checked, quoted_fields()
    count_lines: bool = False  # count the non-blank lines (JSON: one object each)
    _bytes: tuple[bytes, ...] = field(init=False)  # refused wherever they are
    _quoted: re.Pattern[bytes] | None = field(init=False)
    _other_space: re.Pattern[str] | None = field(init=False)

    def __post_init__(self) -> None:
        refused = [b"\x00"]
        other_space = None
        if self.whitespace is not None:
            refused += [c.encode() for c in _ASCII_SPACE if c not in self.whitespace]
            other_space = re.compile(rf"[^\S{re.escape(self.whitespace)}\n\r]")
        object.__setattr__(self, "_bytes", tuple(refused))
        object.__setattr__(self, "_other_space", other_space)
        quoted = None if self.quoted is None else quoted_fields(self.quoted)
        object.__setattr__(self, "_quoted", quoted)

    def refused(self, block: bytes) -> str | None:
        """Why ``block`` (whole lines, as bytes) cannot be read by Arrow, or None."""
        for byte in self._bytes:
            if byte in block:
                return f"the file holds {byte!r}"
        if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
            return "a carriage return that does not end a line"
        if self.integers and (b"x" in block or b"X" in block) and _HEX.search(block):
            return "a hexadecimal-looking '0x'"
        if self._quoted is not None and b'"' in block and b'"' in self._quoted.sub(b"", block):
            return "quoting that Arrow and the csv module read differently"
        return None

    def refused_text(self, text: str) -> str | None:
        """Why decoded non-ASCII text cannot be read by Arrow, or None."""
        if self._other_space is not None and self._other_space.search(text):
            return "whitespace other than the separators"
        return None


def quoted_fields(sep: str) -> re.Pattern[bytes]:
    """A quoted CSV field as the csv module reads it in strict mode: opened at the start
    of a field, ``""`` for a quote inside, closed at the end of the field; here also on
    one line. Where a quote is left once these are removed, the two readers could differ
    (Arrow reads on after ``"ab"c``, where the csv module stops with an error), so the
    file is refused."""
    d = re.escape(sep.encode())
    return re.compile(
        rb"(?:^|(?<=" + d + rb'))"(?:[^"\n]|"")*"(?=' + d + rb"|\r?\n|\Z)", re.MULTILINE
    )


@dataclass
class Scanned:
    """What the scan learnt of a file."""

    start: int = 0  # decompressed bytes before Arrow's first row: a byte-order mark, a header
    header: list[str] | None = None  # the header's fields, when asked for
    lines: int = 0  # non-blank lines, when counted
    ascii: bool = True  # every byte is ASCII (else a non-UTF-8 file needs transcoding)


def scan(
    path: Path, encoding: str, rules: Rules, header_sep: str | None = None, progress: bool = False
) -> Scanned:
    """Check the whole file; with ``header_sep``, its first non-blank CSV row is the
    header, read here as the csv module reads it."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise Declined(f"unknown encoding {encoding!r}") from None
    if name not in _ENCODINGS:
        raise Declined(f"encoding {encoding!r}")
    found = Scanned()
    with open_raw(path) as raw:
        bar = progress_bar(path, progress)
        try:
            stream = binary_stream(raw)
            found.start = stream.tell()  # past a byte-order mark
            carry = b""  # the start of a line whose end is not read yet
            while True:
                chunk = stream.read(BLOCK)
                if bar is not None:
                    bar.update(raw.tell() - bar.n)
                if chunk:
                    cut = chunk.rfind(b"\n") + 1
                    if cut == 0:
                        carry += chunk
                        if len(carry) >= BLOCK:
                            raise Declined("a line longer than Arrow's block")
                        continue
                    block, carry = carry + chunk[:cut], chunk[cut:]
                else:
                    block, carry = carry, b""
                _check(found, block, name, rules, final=not chunk)
                if header_sep is not None and found.header is None:
                    found.start += _header(found, block, name, header_sep)
                if not chunk:
                    if header_sep is not None and found.header is None:
                        raise Declined("no header")
                    return found
        finally:
            if bar is not None:
                bar.close()


def _header(found: Scanned, block: bytes, encoding: str, sep: str) -> int:
    """The bytes of ``block`` up to the end of the header, which goes into ``found``
    once found (the block passed the checks: its quoting is the csv module's, on one
    line)."""
    at = 0
    with csv_field_limit():
        while at < len(block):
            end = block.find(b"\n", at) + 1 or len(block)
            row = next(csv.reader([block[at:end].decode(encoding)], delimiter=sep, strict=True), [])
            at = end
            if not is_blank(row):
                found.header = row
                break
    return at


def _check(found: Scanned, block: bytes, encoding: str, rules: Rules, final: bool) -> None:
    why = rules.refused(block)
    if why is not None:
        raise Declined(why)
    if rules.count_lines:
        lines = block.count(b"\n")
        if block.count(b"\n{") + block.startswith(b"{") != lines:  # not every line "{...
            lines -= len(_BLANK_LINE.findall(block))
        if final and not block.endswith(b"\n") and block.rsplit(b"\n", 1)[-1].strip():
            lines += 1  # a last line without a line ending
        found.lines += lines
    if not block.isascii():
        found.ascii = False
        try:
            text = block.decode(encoding)
        except UnicodeDecodeError:
            raise Declined(f"not valid {encoding}") from None
        why = rules.refused_text(text)
        if why is not None:
            raise Declined(why)
