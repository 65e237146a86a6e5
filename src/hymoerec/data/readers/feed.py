"""A text file's bytes as Arrow's readers take them, checked on the way.

Arrow's CSV and JSON readers split and convert a file in C++, but they differ from the
line-by-line readers on some inputs: a lone ``\\r`` ends a row, ``0x10`` is an integer,
a NUL byte is kept in an id. :class:`Feed` hands Arrow the decompressed bytes, in
UTF-8, and refuses (raises :class:`Declined`) what the two would read differently, so
that the file goes to the line-by-line reader instead. It works on whole lines, a block
of several megabytes at a time, with byte searches that run in C: one ``memchr`` pass
per byte that could matter, and a closer look only in a block that holds one.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

BLOCK = 1 << 24  # bytes read at a time, and Arrow's block size: a line must fit in one
COLON_PAIR = b"\x1f"  # what MovieLens's "::" becomes: Arrow splits on one character

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
    """What :class:`Feed` refuses, counts and rewrites. Always refused: NUL (NumPy
    strings drop a trailing one) and a ``\\r`` not followed by ``\\n`` (Arrow ends a row
    there, Python does not)."""

    integers: bool = False  # refuse "0x": Arrow reads hexadecimal integers, Python not
    # whitespace-separated formats: the separators; other whitespace is refused, as
    # str.split() would split on it too
    whitespace: str | None = None
    colons: bool = False  # MovieLens .dat: "::" becomes COLON_PAIR, which is refused
    quoted: str | None = None  # CSV with this separator: quotes checked, quoted_fields()
    count_lines: bool = False  # count the non-blank lines (JSON: one object each)
    _bytes: tuple[bytes, ...] = field(init=False)  # refused wherever they are
    _quoted: re.Pattern[bytes] | None = field(init=False)

    def __post_init__(self) -> None:
        refused = [b"\x00"]
        if self.whitespace is not None:
            refused += [c.encode() for c in _ASCII_SPACE if c not in self.whitespace]
        if self.colons:
            refused.append(COLON_PAIR)
        object.__setattr__(self, "_bytes", tuple(dict.fromkeys(refused)))
        quoted = None if self.quoted is None else quoted_fields(self.quoted)
        object.__setattr__(self, "_quoted", quoted)

    def refused(self, block: bytes) -> str | None:
        """Why ``block`` (whole lines) cannot be read by Arrow, or None."""
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


class Feed:
    """A read-only binary file object over ``stream`` for Arrow, in UTF-8.

    ``lines`` counts the non-blank lines when the rules ask for it; ``next_line()`` takes
    the next line for the caller instead of passing it on.
    """

    def __init__(
        self, stream: Any, encoding: str, rules: Rules, bar: Any = None, raw: Any = None
    ) -> None:
        try:
            self.encoding = codecs.lookup(encoding).name
        except LookupError:
            raise Declined(f"unknown encoding {encoding!r}") from None
        if self.encoding not in _ENCODINGS:
            raise Declined(f"encoding {encoding!r}")
        self.stream, self.rules, self.bar, self.raw = stream, rules, bar, raw
        self.carry = b""  # the start of a line whose end is not read yet
        self.blocks: deque[bytes] = deque()  # converted blocks not handed out yet
        self.done = False
        self.lines = 0
        self.closed = False
        self._other_space: re.Pattern[str] | None = None
        if rules.whitespace is not None:
            allowed = re.escape(rules.whitespace + "\n\r")
            self._other_space = re.compile(rf"[^\S{allowed}]")

    # --------------------------------------------------------------- file object

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (Arrow takes a short read as a smaller block)."""
        while not self.blocks and not self.done:
            self._fill()
        if size < 0:
            while not self.done:
                self._fill()
            out = b"".join(self.blocks)
            self.blocks.clear()
            return out
        if not self.blocks:
            return b""
        block = self.blocks.popleft()
        if len(block) > size:
            self.blocks.appendleft(block[size:])
            block = block[:size]
        return block

    def next_line(self) -> str | None:
        """The next line, decoded, for the caller rather than Arrow; None at the end."""
        parts = []
        while True:
            while not self.blocks and not self.done:
                self._fill()
            if not self.blocks:
                break
            block = self.blocks.popleft()
            end = block.find(b"\n") + 1
            if end:
                parts.append(block[:end])
                if end < len(block):
                    self.blocks.appendleft(block[end:])
                break
            parts.append(block)
        return b"".join(parts).decode("utf-8") if parts else None

    # -------------------------------------------------------------------- blocks

    def _fill(self) -> None:
        chunk = self.stream.read(BLOCK)
        if self.bar is not None and self.raw is not None:
            self.bar.update(self.raw.tell() - self.bar.n)
        if not chunk:
            block, self.carry, self.done = self.carry, b"", True
            if self.rules.count_lines and block.strip(b" \t\r"):
                self.lines += 1  # a last line without a line ending
        else:
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                self.carry += chunk
                if len(self.carry) > BLOCK:
                    raise Declined("a line longer than Arrow's block")
                return
            block, self.carry = self.carry + chunk[:cut], chunk[cut:]
        if block:
            self.blocks.append(self._convert(block))

    def _convert(self, block: bytes) -> bytes:
        """Whole lines, checked, counted and in UTF-8."""
        why = self.rules.refused(block)
        if why is not None:
            raise Declined(why)
        if self.rules.count_lines:
            self.lines += block.count(b"\n")
            if block.count(b"\n{") + block.startswith(b"{") != block.count(b"\n"):
                self.lines -= len(_BLANK_LINE.findall(block))  # not every line is "{..."
        if not block.isascii():
            try:
                text = block.decode(self.encoding)
            except UnicodeDecodeError:
                raise Declined(f"not valid {self.encoding}") from None
            if self._other_space is not None and self._other_space.search(text):
                raise Declined("whitespace other than the separators")
            if self.encoding != "utf-8":
                block = text.encode("utf-8")
        if self.rules.colons:
            block = block.replace(b"::", COLON_PAIR)
        return block
