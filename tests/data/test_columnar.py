"""The columnar readers against the line-by-line readers, the reference: on generated
files, mostly clean with now and then a field that one of the two could read otherwise,
whenever the columnar path gives a result it is the line-by-line reader's, to the id
width and the timestamp dtype; and a clean file is read by the columnar path (it does
not decline), so that the speed is not lost unnoticed."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hymoerec.data.readers import checked, columnar
from hymoerec.data.readers.fields import Columns
from hymoerec.data.readers.scan import Declined

SAME = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CLEAN = "abcYZ019-_./é日"  # no x or X: "0x" in any field keeps a file off the fast path
# what a field may hold that one reader could read otherwise: whitespace of every kind,
# quotes, separators, hexadecimal prefixes, NUL, a lone carriage return
RISKY = [" ", "\t", "  ", '"', "'", ":", "::", ",", "0x", "0X", "\xa0", "\u3000", "\x0b", "\x1c"]
RISKY += ["\x00", "\r", "\u2028", "\x85", "\ufeff"]
RATINGS = ["1", "2.5", "5", "0.5", "4.0"]
ODD_RATINGS = ["", "nan", "inf", " 4", "4 ", "+4", "1e0", "1_0", "four", "٣", "1e400", ".5"]
ODD_TIMES = ["0x10", "1.5", "100.0", "1e3", " 7", "7 ", "+7", "9223372036854775808", "", "t"]
ODD_TIMES += ["-0", "007", "٣", "1_000", "-9223372036854775808", "9223372036854775807"]


class Case:
    """A generated file: its text and whether every choice was a clean one."""

    def __init__(self) -> None:
        self.clean = True

    def pick(self, draw: Callable, clean: st.SearchStrategy, odd: st.SearchStrategy) -> str:
        if draw(st.integers(0, 29)) == 0:
            self.clean = False
            return str(draw(odd))
        return str(draw(clean))


def ids_of(case: Case, draw: Callable) -> str:
    text = draw(st.text(alphabet=CLEAN, min_size=1, max_size=5))
    if draw(st.integers(0, 29)) == 0:
        case.clean = False
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(RISKY)) + text[at:]
    return text


def ending(case: Case, draw: Callable) -> str:
    end = draw(st.sampled_from(["\n", "\r\n"]))
    if draw(st.integers(0, 4)) == 0:
        end += draw(st.sampled_from(["\n", "\r\n", "\n", " \n"]))  # blank lines
        if end.endswith(" \n"):
            case.clean = False  # a line of spaces: the columnar path leaves it to Python
    return end


@st.composite
def rated_text(draw: Callable, sep: str) -> tuple[str, bool]:
    """``user item rating timestamp`` rows."""
    case = Case()
    out = []
    for _ in range(draw(st.integers(1, 12))):
        fields = [
            ids_of(case, draw),
            ids_of(case, draw),
            case.pick(draw, st.sampled_from(RATINGS), st.sampled_from(ODD_RATINGS)),
            case.pick(draw, st.integers(-(2**62), 2**62), st.sampled_from(ODD_TIMES)),
        ]
        if draw(st.integers(0, 49)) == 0:
            case.clean = False
            fields = fields[: draw(st.integers(0, 3))] or [*fields, "9"]
        out.append(sep.join(fields) + ending(case, draw))
    if draw(st.booleans()):
        out[-1] = out[-1].rstrip("\r\n")  # no line ending after the last line
    return "".join(out), case.clean


def same(fast: Columns, slow: Columns) -> None:
    for got, want in ((fast.user, slow.user), (fast.item, slow.item)):
        assert got.values.dtype == want.values.dtype
        assert got.values.tolist() == want.values.tolist()
        assert got.codes.tolist() == want.codes.tolist()
    assert fast.timestamp.dtype == slow.timestamp.dtype
    assert fast.timestamp.tolist() == slow.timestamp.tolist()
    assert (fast.rating is None) == (slow.rating is None)
    if fast.rating is not None and slow.rating is not None:
        assert fast.rating.tolist() == slow.rating.tolist()


def compare(reader: str, data: bytes, clean: bool, *arguments: object) -> None:
    """If the columnar reader gives a result, it is the line-by-line reader's; on a clean
    file it gives one."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.txt"
        path.write_bytes(data)
        try:
            fast = getattr(columnar, reader)(path, *arguments, False)
        except (Declined, ValueError, OSError) as declined:  # Arrow errors among these
            assert not clean, f"a clean file declined: {declined}"
            return
        same(fast, getattr(checked, reader)(path, *arguments, False))


@SAME
@given(rated_text("::"), st.sampled_from(["iso-8859-1", "utf-8"]))
def test_movielens_dat(case: tuple[str, bool], encoding: str) -> None:
    text, clean = case
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data, clean = text.encode("utf-8"), clean and encoding != "utf-8"
        encoding = "iso-8859-1"  # UTF-8 bytes read as Latin-1: still decodable
    compare("movielens_dat", data, clean, encoding)


@SAME
@given(rated_text("\t"), st.booleans())
def test_movielens_100k(case: tuple[str, bool], spaces: bool) -> None:
    text, clean = case
    if spaces:  # a space-separated copy
        text, clean = text.replace("\t", " "), clean and " " not in case[0]
    compare("movielens_100k", text.encode(), clean, "utf-8")


@SAME
@given(rated_text(","), st.booleans())
def test_amazon_ratings(case: tuple[str, bool], quote: bool) -> None:
    text, clean = case
    if quote:  # every user id quoted, as some exports write them
        lines = text.split("\n")
        quoted = [
            f'"{line.replace(",", chr(34) + ",", 1)}' if "," in line else line for line in lines
        ]
        text = "\n".join(quoted)
    compare("amazon_ratings", text.encode(), clean, "utf-8")


@SAME
@given(st.data(), st.sampled_from([",", "\t", ";"]), st.permutations(range(5)), st.booleans())
def test_delimited(data: st.DataObject, sep: str, order: list[int], timed: bool) -> None:
    rows, clean = data.draw(rated_text("\x01"))
    names = ["user", "item", "rating", "time", "note"]
    lines = [sep.join(names[i] for i in order) + "\n"]
    note = f'"free text{sep} with ""quotes"""'
    for row in rows.splitlines(keepends=True):
        body = row.rstrip("\r\n")
        fields = [*body.split("\x01"), note] if body else []
        if len(fields) == 5:
            fields = [fields[i] for i in order]
        lines.append(sep.join(fields) + row[len(body) :])
    text = "".join(lines)
    time_col = "time" if timed else None
    compare("delimited", text.encode(), clean, "user", "item", time_col, "rating", sep, "utf-8")


@SAME
@given(st.data())
def test_sequences(data: st.DataObject) -> None:
    case = Case()
    lines = []
    for _ in range(data.draw(st.integers(1, 10))):
        tokens = [ids_of(case, data.draw) for _ in range(data.draw(st.integers(2, 6)))]
        sep = data.draw(st.sampled_from([" ", "\t"]))
        if data.draw(st.integers(0, 19)) == 0:
            case.clean = False
            sep = data.draw(st.sampled_from(["  ", " \t", "\xa0"]))
        lines.append(sep.join(tokens) + ending(case, data.draw))
    compare("sequences", "".join(lines).encode(), case.clean, "utf-8")


@SAME
@given(st.data())
def test_amazon_reviews(data: st.DataObject) -> None:
    case = Case()
    rated = data.draw(st.booleans())
    lines = []
    for _ in range(data.draw(st.integers(1, 10))):
        review: dict[str, object] = {
            "reviewerID": ids_of(case, data.draw),
            "asin": ids_of(case, data.draw),
            "unixReviewTime": data.draw(st.integers(-(2**62), 2**62)),
            "helpful": [1, 2],
            "reviewText": 'nice {} [and] "quoted"',
        }
        if rated:
            review["overall"] = data.draw(st.sampled_from([1.0, 2.5, 5, 4.0]))
        if data.draw(st.integers(0, 19)) == 0:
            case.clean = False
            key = data.draw(st.sampled_from(["reviewerID", "asin", "unixReviewTime", "overall"]))
            odd = [7, True, None, 5.0, 5.5, "5", 2**64, float("nan"), " ", [1], "\x00"]
            review[key] = data.draw(st.sampled_from(odd))
        line = json.dumps(review, ensure_ascii=data.draw(st.booleans()))
        if data.draw(st.integers(0, 29)) == 0:
            case.clean = False
            line = data.draw(st.sampled_from([repr(review), line + " " + line, "[1]", "{"]))
        lines.append(line + ending(case, data.draw))
    compare("amazon_reviews", "".join(lines).encode(), case.clean, "utf-8")


# ------------------------------------------------------------------ clean files, fast


def test_clean_files_of_every_format_take_the_columnar_path(tmp_path: Path) -> None:
    files = {
        "ratings.dat": ("movielens_dat", "1::10::5::100\r\n2::20::4::200\n\n", ("iso-8859-1",)),
        "u.data": ("movielens_100k", "1\t10\t5\t100\n2\t20\t4\t200\n", ("utf-8",)),
        "seq.txt": ("sequences", "1 10 11\n\n2 20 21 22\n", ("utf-8",)),
        "r.csv": ("amazon_ratings", '"u1",i1,5.0,10\nu2,i2,2.0,20\n', ("utf-8",)),
        "reviews.json": (
            "amazon_reviews",
            '{"reviewerID": "u", "asin": "i", "unixReviewTime": 4, "overall": 5.0}\n',
            ("utf-8",),
        ),
        "log.csv": (
            "delimited",
            'user,item,t,note\nu1,i1,10,"a, b"\nu2,i2,20,\n',
            ("user", "item", "t", None, ",", "utf-8"),
        ),
    }
    for name, (reader, text, arguments) in files.items():
        path = tmp_path / name
        path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + text.encode()))  # gzip and a BOM
        fast = getattr(columnar, reader)(path, *arguments, False)
        same(fast, getattr(checked, reader)(path, *arguments, False))


def test_dat_ids_keep_their_latin1_letters(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes("José::10::5::100\n  4 ::11::4::101\n".encode("iso-8859-1"))
    fast = columnar.movielens_dat(path, "iso-8859-1", False)
    assert fast.user.decode().tolist() == ["José", "4"]
    same(fast, checked.movielens_dat(path, "iso-8859-1", False))


def test_ids_that_differ_only_around_whitespace_are_one_id(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("u\ti\tt\n4\ta\t1\n 4\u3000\ta\t2\n4 \tb\t3\n")
    fast = columnar.delimited(path, "u", "i", "t", None, "\t", "utf-8", False)
    assert fast.user.values.tolist() == ["4"] and np.all(fast.user.codes == 0)
    same(fast, checked.delimited(path, "u", "i", "t", None, "\t", "utf-8", False))


def test_a_file_arrow_reads_otherwise_is_declined(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('"u1"x,i1,5.0,10\n')  # the csv module refuses this row
    with pytest.raises(Declined):
        columnar.amazon_ratings(path, "utf-8", False)
    path.write_text('{"reviewerID": "u", "asin": "i", "unixReviewTime": 4} {}\n')
    with pytest.raises(Declined):  # two objects on one line: Arrow reads two rows
        columnar.amazon_reviews(path, "utf-8", False)


@st.composite
def integer_text(draw: Callable) -> str:
    """An integer as text, now and then written otherwise than Python writes it."""
    value = draw(st.integers(-(2**40), 2**63 - 1) | st.integers(-3, 3))
    text = str(value)
    if draw(st.integers(0, 19)) == 0:
        text = draw(st.sampled_from(["0", "+", " ", "-0", "00"])) + str(abs(value))
    return text


@SAME
@given(st.lists(st.tuples(integer_text(), integer_text()), min_size=1, max_size=30))
def test_integer_ids(rows: list[tuple[str, str]]) -> None:
    """Integer ids are encoded from their values: the same ids, and "07", "+7", "-0"
    or " 7" kept apart from "7" as the line-by-line reader keeps them."""
    text = "user\titem\tt\n" + "".join(f"{u}\t{i}\t{n}\n" for n, (u, i) in enumerate(rows))
    compare("delimited", text.encode(), False, "user", "item", "t", None, "\t", "utf-8")


def test_integer_ids_sort_as_text_and_keep_their_width(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("u\ti\tt\n10\t-5\t1\n9\t123456789\t2\n10\t7\t3\n")
    fast = columnar.delimited(path, "u", "i", "t", None, "\t", "utf-8", False)
    assert fast.user.values.tolist() == ["10", "9"] and fast.user.codes.tolist() == [0, 1, 0]
    assert fast.item.values.tolist() == ["-5", "123456789", "7"]
    same(fast, checked.delimited(path, "u", "i", "t", None, "\t", "utf-8", False))
