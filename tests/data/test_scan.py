"""The scan before Arrow reads a file: what it refuses (each an input on which Arrow and
the line-by-line readers would differ), where the rows start, the header, the lines."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

from hymoerec.data.readers.scan import (
    BLOCK,
    PYTHON_WHITESPACE,
    Declined,
    Rules,
    Scanned,
    quoted_fields,
    scan,
)


def scanned(
    tmp_path: Path,
    data: bytes,
    rules: Rules,
    encoding: str = "utf-8",
    header_sep: str | None = None,
) -> Scanned:
    path = tmp_path / "data.txt"
    path.write_bytes(data)
    return scan(path, encoding, rules, header_sep)


def test_whitespace_is_pythons() -> None:
    python = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert python == PYTHON_WHITESPACE


def test_clean_lines_pass(tmp_path: Path) -> None:
    found = scanned(tmp_path, b"a,1\r\nb,2\n\nc,3", Rules(integers=True, quoted=","))
    assert (found.start, found.ascii, found.header) == (0, True, None)


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
        (b"a\x1fb 1\n", Rules(whitespace=" \t")),
        ("a\u3000b\t1\n".encode(), Rules(whitespace="\t")),
        (b"Jos\xe9,1\n", Rules()),  # not UTF-8
    ],
)
def test_refuses_what_the_readers_read_differently(
    tmp_path: Path, data: bytes, rules: Rules
) -> None:
    with pytest.raises(Declined):
        scanned(tmp_path, data, rules)


def test_hexadecimal_looking_ids_are_refused_only_with_integer_columns(tmp_path: Path) -> None:
    scanned(tmp_path, b"0xa,1\n", Rules())
    scanned(tmp_path, b"xa,1\nXb,2\n", Rules(integers=True))


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
    tmp_path: Path, line: bytes, refused: bool
) -> None:
    if refused:
        with pytest.raises(Declined):
            scanned(tmp_path, line, Rules(quoted=","))
    else:
        scanned(tmp_path, line, Rules(quoted=","))


def test_quoted_field_pattern_uses_the_separator() -> None:
    assert quoted_fields("\t").sub(b"", b'"a\tb"\t"c"\n') == b"\t\n"
    assert b'"' in quoted_fields("\t").sub(b"", b'"a",1\n')


def test_latin1_letters_are_noted_for_transcoding(tmp_path: Path) -> None:
    found = scanned(tmp_path, "José,1\n".encode("iso-8859-1"), Rules(), "iso-8859-1")
    assert not found.ascii
    assert scanned(tmp_path, "José,1\n".encode(), Rules()).ascii is False


def test_unknown_encodings_decline(tmp_path: Path) -> None:
    for encoding in ("utf-16", "no-such-encoding"):
        with pytest.raises(Declined):
            scanned(tmp_path, b"a,1\n", Rules(), encoding)


def test_non_ascii_whitespace_is_refused_only_in_whitespace_separated_formats(
    tmp_path: Path,
) -> None:
    scanned(tmp_path, "é\t日\n".encode(), Rules(whitespace="\t"))
    scanned(tmp_path, "a\u3000b,1\n".encode(), Rules())
    with pytest.raises(Declined):
        scanned(tmp_path, "a\xa0b\t1\n".encode("iso-8859-1"), Rules(whitespace="\t"), "latin-1")


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
def test_counts_non_blank_lines(tmp_path: Path, data: bytes, lines: int) -> None:
    assert scanned(tmp_path, data, Rules(count_lines=True)).lines == lines


def test_header_is_the_first_non_blank_row_and_the_rows_start_after_it(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf\n ,\n"user", item\r\n1,2\n'
    found = scanned(tmp_path, data, Rules(quoted=","), header_sep=",")
    assert found.header == [" ", ""]  # " ," is two fields, so not blank: the header
    found = scanned(
        tmp_path, b'\xef\xbb\xbf\n  \n"user", item\r\n1,2\n', Rules(quoted=","), "utf-8", ","
    )
    assert found.header == ["user", " item"]
    assert found.start == len(b'\xef\xbb\xbf\n  \n"user", item\r\n')
    with pytest.raises(Declined):
        scanned(tmp_path, b"\n\n", Rules(), header_sep=",")


def test_gzip_and_lines_across_blocks(tmp_path: Path) -> None:
    line = b"u," + b"x" * 1000 + b"\n"
    data = line * (BLOCK // len(line) + 3)  # a line straddles the first block's end
    path = tmp_path / "data.gz"
    path.write_bytes(gzip.compress(data))
    assert scan(path, "utf-8", Rules(count_lines=True)).lines == len(data) // len(line)
    path.write_bytes(gzip.compress(b"u," + b"x" * (BLOCK + 10) + b"\n"))
    with pytest.raises(Declined):  # longer than Arrow's block
        scan(path, "utf-8", Rules())
