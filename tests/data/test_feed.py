"""The Feed: what it hands Arrow (UTF-8 whole lines, '::' rewritten) and what it refuses,
each refusal being an input on which Arrow and the line-by-line readers would differ."""

from __future__ import annotations

import io
import sys

import pytest

from hymoerec.data.readers.feed import (
    COLON_PAIR,
    PYTHON_WHITESPACE,
    Declined,
    Feed,
    Rules,
    quoted_fields,
)


def fed(data: bytes, rules: Rules, encoding: str = "utf-8", size: int = 7) -> bytes:
    """Everything the Feed hands out, read in small pieces as Arrow may ask."""
    feed = Feed(io.BytesIO(data), encoding, rules)
    out = []
    while piece := feed.read(size):
        assert size < 0 or len(piece) <= size
        out.append(piece)
    return b"".join(out)


def test_whitespace_is_pythons() -> None:
    python = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert python == PYTHON_WHITESPACE


def test_passes_whole_lines_through() -> None:
    data = b"a,1\r\nb,2\n\nc,3"
    assert fed(data, Rules()) == data
    assert fed(data, Rules(), size=-1) == data


@pytest.mark.parametrize(
    ("data", "rules"),
    [
        (b"a,1\rb,2\n", Rules()),  # a lone CR ends a row in Arrow, not in Python
        (b"a,1\n\r", Rules()),
        (b"a\x00,1\n", Rules()),  # NumPy would drop a trailing NUL from the id
        (b"a,0x10\n", Rules(integers=True)),  # Arrow reads 16, Python refuses
        (b"a,0X1f\n", Rules(integers=True)),
        (b"a b\t1\n", Rules(whitespace="\t")),  # str.split() splits on the space too
        (b"a\x0bb\t1\n", Rules(whitespace="\t")),
        (b"a\x1fb::1\n", Rules(colons=True)),  # the byte '::' becomes
    ],
)
def test_refuses_what_the_readers_read_differently(data: bytes, rules: Rules) -> None:
    with pytest.raises(Declined):
        fed(data, rules)


def test_hexadecimal_looking_ids_are_refused_only_with_integer_columns() -> None:
    assert fed(b"0xa,1\n", Rules()) == b"0xa,1\n"
    assert fed(b"xa,1\nXb,2\n", Rules(integers=True)) == b"xa,1\nXb,2\n"


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        (b'"a,b",1\n', False),
        (b'x,"a ""quoted"" note"\n', False),
        (b'x,""\r\n', False),
        (b'"a","b","c"', False),
        (b'a"b,1\n', True),  # a literal quote in an unquoted field: Python keeps it
        (b'"ab"c,1\n', True),  # Arrow reads abc, the csv module in strict mode refuses
        (b'"ab" ,1\n', True),
        (b' "a",1\n', True),
        (b'"a\nb",1\n', True),  # a quoted line break: Arrow's blocks split at lines
        (b'"abc,1\n', True),
    ],
)
def test_quotes_pass_only_where_the_csv_module_reads_them_as_arrow_does(
    line: bytes, refused: bool
) -> None:
    if refused:
        with pytest.raises(Declined):
            fed(line, Rules(quoted=","))
    else:
        assert fed(line, Rules(quoted=",")) == line


def test_quoted_field_pattern_uses_the_separator() -> None:
    assert quoted_fields("\t").sub(b"", b'"a\tb"\t"c"\n') == b"\t\n"
    assert b'"' in quoted_fields("\t").sub(b"", b'"a",1\n')


def test_colon_pairs_become_one_byte() -> None:
    assert fed(b"1::2::5::9\n1:::2::5::9\n", Rules(colons=True)) == (
        b"1" + COLON_PAIR + b"2" + COLON_PAIR + b"5" + COLON_PAIR + b"9\n"
        b"1" + COLON_PAIR + b":2" + COLON_PAIR + b"5" + COLON_PAIR + b"9\n"
    )


def test_latin1_is_handed_out_as_utf8() -> None:
    assert fed("José,1\n".encode("iso-8859-1"), Rules(), "iso-8859-1") == "José,1\n".encode()


def test_undecodable_or_unknown_encodings_decline() -> None:
    with pytest.raises(Declined):
        fed(b"Jos\xe9,1\n", Rules())
    with pytest.raises(Declined):
        Feed(io.BytesIO(b""), "utf-16", Rules())
    with pytest.raises(Declined):
        Feed(io.BytesIO(b""), "no-such-encoding", Rules())


def test_non_ascii_whitespace_is_refused_in_whitespace_separated_formats() -> None:
    assert fed("é\t日\n".encode(), Rules(whitespace="\t")) == "é\t日\n".encode()
    with pytest.raises(Declined):
        fed("a\u3000b\t1\n".encode(), Rules(whitespace="\t"))
    with pytest.raises(Declined):
        fed("a\xa0b\t1\n".encode("iso-8859-1"), Rules(whitespace="\t"), "iso-8859-1")


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b'{"a": 1}\n{"a": 2}\n', 2),
        (b'{"a": 1}\n\n  \r\n{"a": 2}', 2),
        (b'\n {"a": 1}\n\t\n', 1),
        (b"", 0),
        (b"  ", 0),
    ],
)
def test_counts_non_blank_lines(data: bytes, lines: int) -> None:
    feed = Feed(io.BytesIO(data), "utf-8", Rules(count_lines=True))
    assert feed.read(-1) == data
    assert feed.lines == lines


def test_next_line_is_taken_before_arrow_reads() -> None:
    feed = Feed(io.BytesIO(b"\nu,i\r\n1,2\n"), "utf-8", Rules())
    assert feed.next_line() == "\n"
    assert feed.next_line() == "u,i\r\n"
    assert feed.read(100) == b"1,2\n"
    assert feed.next_line() is None
