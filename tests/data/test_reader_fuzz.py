"""Property-based fuzzing of every reader: a generated file gives either the rows it was
generated from (compared with what the generator wrote, not with a second parser) or a
DataError naming the file, and the line of the damage where the file has lines; never
another exception, never a different result.

Each property draws a list of interactions, writes them in the format with random blank
lines, CRLF endings and whitespace around the ids, and may replace one row by a damaged
one whose line is known. Runs are derandomized with bounded examples, so CI is
deterministic and fast.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hymoerec.data.errors import DataError, MalformedRowError
from hymoerec.data.interactions import Interactions
from hymoerec.data.readers import (
    read_amazon_ratings,
    read_amazon_reviews,
    read_movielens_100k,
    read_movielens_dat,
    read_sequences,
    read_table,
)

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INT64_MAX = 2**63 - 1

# ids: letters, digits, punctuation that no format uses as a separator, a Latin-1 letter
# (MovieLens .dat is read as ISO-8859-1) and, where the encoding is UTF-8, a CJK one
CORE = "abcXYZ019-_./é"
ids_latin1 = st.text(alphabet=CORE, min_size=1, max_size=6)
ids_utf8 = st.text(alphabet=CORE + "日", min_size=1, max_size=6)
padding = st.sampled_from(["", " ", "  ", "\t"])  # around ids, where the format allows it
times = st.integers(min_value=-(2**62), max_value=INT64_MAX)
ratings = st.sampled_from([1.0, 2.5, 3.0, 4.0, 5.0, 0.5])


@dataclass(frozen=True)
class Row:
    user: str
    item: str
    rating: float
    time: int


rows_latin1 = st.lists(
    st.builds(Row, ids_latin1, ids_latin1, ratings, times), min_size=1, max_size=25
)
rows_utf8 = st.lists(st.builds(Row, ids_utf8, ids_utf8, ratings, times), min_size=1, max_size=25)


@dataclass(frozen=True)
class Layout:
    blank_before: list[bool]  # a blank line before row i
    crlf: bool
    pad: str  # whitespace around ids


def layouts(count: int) -> st.SearchStrategy[Layout]:
    return st.builds(
        Layout, st.lists(st.booleans(), min_size=count, max_size=count), st.booleans(), padding
    )


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def lay_out(lines: list[str], layout: Layout, header: str | None = None) -> tuple[str, list[int]]:
    """The file's text and the 1-based line number of each row."""
    out = [] if header is None else [header]
    numbers = []
    for line, blank in zip(lines, layout.blank_before, strict=True):
        if blank:
            out.append("")
        out.append(line)
        numbers.append(len(out))
    end = "\r\n" if layout.crlf else "\n"
    return end.join(out) + end, numbers


def check(
    read: Callable[[], Interactions],
    path: Path,
    expected: list[Row],
    bad_line: int | None,
    with_rating: bool = True,
    file_order_times: bool = False,
) -> None:
    if bad_line is not None:
        with pytest.raises(MalformedRowError) as info:
            read()
        assert info.value.path == path and info.value.line == bad_line, str(info.value)
        assert len(str(info.value)) < 400
        return
    got = read()
    assert got.user.tolist() == [row.user for row in expected]
    assert got.item.tolist() == [row.item for row in expected]
    wanted_times = list(range(len(expected))) if file_order_times else [r.time for r in expected]
    assert got.timestamp.dtype == np.int64
    assert got.timestamp.tolist() == wanted_times
    if with_rating:
        assert got.rating is not None and got.rating.tolist() == [r.rating for r in expected]


# a damaged row: (name, how to build its text from a good row's fields)
DAMAGE = st.sampled_from(
    ["missing field", "extra field", "rating word", "rating nan", "time word", "time huge"]
)


def damaged_fields(kind: str, fields: list[str], rating_at: int, time_at: int) -> list[str]:
    fields = list(fields)
    if kind == "missing field":
        return fields[:-1]
    if kind == "extra field":
        return [*fields, "7"]
    if kind == "rating word":
        fields[rating_at] = "five"
    elif kind == "rating nan":
        fields[rating_at] = "nan"
    elif kind == "time word":
        fields[time_at] = "t0"
    else:
        fields[time_at] = str(2**64 + 5)
    return fields


def rating_text(rating: float) -> str:
    return str(int(rating)) if rating.is_integer() else str(rating)


# ------------------------------------------------------------------- line formats


@st.composite
def rated_file(draw, ids=rows_latin1):  # type: ignore[no-untyped-def]
    rows = draw(ids)
    layout = draw(layouts(len(rows)))
    damage = draw(st.none() | st.tuples(st.integers(0, len(rows) - 1), DAMAGE))
    return rows, layout, damage


@FUZZ
@given(rated_file())
def test_movielens_dat(case) -> None:  # type: ignore[no-untyped-def]
    rows, layout, damage = case
    lines = []
    for index, row in enumerate(rows):
        fields = [
            f"{layout.pad}{row.user}{layout.pad}",
            f"{layout.pad}{row.item}",
            rating_text(row.rating),
            str(row.time),
        ]
        if damage is not None and damage[0] == index:
            fields = damaged_fields(damage[1], fields, 2, 3)
        lines.append("::".join(fields))
    text, numbers = lay_out(lines, layout)
    with folder() as tmp:
        path = tmp / "ratings.dat"
        path.write_bytes(text.encode("iso-8859-1"))
        bad = None if damage is None else numbers[damage[0]]
        check(lambda: read_movielens_dat(path), path, rows, bad)


@FUZZ
@given(rated_file(), st.sampled_from(["\t", " ", " \t "]))
def test_movielens_100k(case, separator: str) -> None:  # type: ignore[no-untyped-def]
    rows, layout, damage = case
    lines = []
    for index, row in enumerate(rows):
        fields = [row.user, row.item, rating_text(row.rating), str(row.time)]
        if damage is not None and damage[0] == index:
            fields = damaged_fields(damage[1], fields, 2, 3)
        lines.append(layout.pad + separator.join(fields))
    text, numbers = lay_out(lines, layout)
    with folder() as tmp:
        path = tmp / "u.data"
        path.write_text(text, encoding="utf-8")
        bad = None if damage is None else numbers[damage[0]]
        check(lambda: read_movielens_100k(path), path, rows, bad)


@FUZZ
@given(rated_file(rows_utf8), st.booleans())
def test_amazon_ratings(case, quote: bool) -> None:  # type: ignore[no-untyped-def]
    rows, layout, damage = case
    lines = []
    for index, row in enumerate(rows):
        user = f'"{row.user}"' if quote else f"{layout.pad}{row.user}{layout.pad}"
        fields = [user, row.item, rating_text(row.rating), str(row.time)]
        if damage is not None and damage[0] == index:
            fields = damaged_fields(damage[1], fields, 2, 3)
        lines.append(",".join(fields))
    text, numbers = lay_out(lines, layout)
    with folder() as tmp:
        path = tmp / "ratings_Fuzz.csv"
        path.write_text(text, encoding="utf-8")
        bad = None if damage is None else numbers[damage[0]]
        check(lambda: read_amazon_ratings(path), path, rows, bad)


@FUZZ
@given(
    st.lists(
        st.tuples(ids_utf8, st.lists(ids_utf8, min_size=1, max_size=6)), min_size=1, max_size=12
    ),
    st.data(),
)
def test_sequences(lines_of, data) -> None:  # type: ignore[no-untyped-def]
    layout = data.draw(layouts(len(lines_of)))
    empty_at = data.draw(st.none() | st.integers(0, len(lines_of) - 1))  # a user, no items
    lines, expected = [], []
    for index, (user, items) in enumerate(lines_of):
        if index == empty_at:
            lines.append(f"{layout.pad}{user}")
            continue
        lines.append(layout.pad + " ".join([user, *items]))
        expected += [Row(user, item, 0.0, 0) for item in items]
    text, numbers = lay_out(lines, layout)
    with folder() as tmp:
        path = tmp / "seq.txt"
        path.write_text(text, encoding="utf-8")
        bad = None if empty_at is None else numbers[empty_at]
        read = lambda: read_sequences(path)  # noqa: E731
        check(read, path, expected, bad, with_rating=False, file_order_times=True)


# ------------------------------------------------------------------------ tables


@FUZZ
@given(rated_file(rows_utf8), st.sampled_from([",", "\t"]), st.permutations(range(5)), st.data())
def test_delimited_table(case, sep: str, order, data) -> None:  # type: ignore[no-untyped-def]
    rows, layout, damage = case
    with_time = data.draw(st.booleans())
    names = ["user", "item", "rating", "time", "note"]
    header = sep.join(names[i] for i in order)
    pad = layout.pad.replace("\t", " ")  # a tab would be a separator in a TSV
    lines = []
    for index, row in enumerate(rows):
        values = [
            f"{pad}{row.user}{pad}",
            row.item,
            rating_text(row.rating),
            str(row.time),
            "free text, with a comma" if sep == "\t" else '"free text, with a comma"',
        ]
        fields = [values[i] for i in order]
        if damage is not None and damage[0] == index:
            fields = damaged_fields(damage[1], fields, order.index(2), order.index(3))
        lines.append(sep.join(fields))
    text, numbers = lay_out(lines, layout, header)
    damage_shows = damage is not None and (with_time or damage[1] not in ("time word", "time huge"))
    with folder() as tmp:
        path = tmp / ("d.tsv" if sep == "\t" else "d.csv")
        path.write_text(text, encoding="utf-8")
        bad = numbers[damage[0]] if damage_shows else None
        time_col = "time" if with_time else None
        read = lambda: read_table(path, "user", "item", time_col, rating_col="rating")  # noqa: E731
        check(read, path, rows, bad, file_order_times=not with_time)


@FUZZ
@given(rows_utf8, st.sampled_from(["int64", "uint64", "float64", "string"]), st.data())
def test_parquet_table(rows: list[Row], time_type: str, data) -> None:  # type: ignore[no-untyped-def]
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    values: list[int | float | str] = [row.time for row in rows]
    problem = None
    if time_type == "uint64":
        values = [abs(row.time) + data.draw(st.sampled_from([0, 2**63])) for row in rows]
        if max(values) > INT64_MAX:
            problem = "does not fit in int64"
    elif time_type == "float64":
        values = [float(row.time % 2**40) for row in rows]
    elif time_type == "string":
        values = [str(row.time) for row in rows]
    kind = {"int64": pa.int64(), "uint64": pa.uint64(), "float64": pa.float64()}.get(
        time_type, pa.string()
    )
    table = pa.table(
        {
            "user": [f" {row.user} " for row in rows],
            "item": [row.item for row in rows],
            "t": pa.array(values, type=kind),
        }
    )
    with folder() as tmp:
        path = tmp / "d.parquet"
        pq.write_table(table, path)
        if problem is not None:
            with pytest.raises(DataError, match=problem) as info:
                read_table(path, "user", "item", "t")
            assert str(path) in str(info.value)
            return
        got = read_table(path, "user", "item", "t")
    assert got.user.tolist() == [row.user for row in rows]
    assert got.item.tolist() == [row.item for row in rows]
    assert got.timestamp.dtype == np.int64
    assert got.timestamp.tolist() == [int(v) for v in values]


# ----------------------------------------------------------------------- reviews


@FUZZ
@given(
    rows_utf8,
    st.data(),
    st.sampled_from(["json", "python"]),
)
def test_amazon_reviews(rows: list[Row], data, style: str) -> None:  # type: ignore[no-untyped-def]
    fraction_at = data.draw(st.none() | st.integers(0, len(rows) - 1))
    times_written: list[int | float] = [row.time for row in rows]
    if fraction_at is not None:
        times_written[fraction_at] = 0.5
    junk_at = data.draw(st.none() | st.integers(0, len(rows) - 1))
    junk = data.draw(st.text(min_size=1, max_size=20).filter(lambda t: t.strip() and "\n" not in t))
    layout = data.draw(layouts(len(rows)))
    lines = []
    for index, (row, time) in enumerate(zip(rows, times_written, strict=True)):
        review = {
            "reviewerID": f"{layout.pad}{row.user}",
            "asin": row.item,
            "overall": row.rating,
            "unixReviewTime": time,
        }
        line = json.dumps(review, ensure_ascii=False) if style == "json" else repr(review)
        lines.append(junk if index == junk_at else line)
    text, numbers = lay_out(lines, layout)
    bad = None  # the first line the reader must refuse
    first_fraction = first_large = None
    for index, time in enumerate(times_written):
        if index == junk_at:
            bad = numbers[index]
            break
        if isinstance(time, float):
            first_fraction = index
        elif abs(time) > 2**53 and first_large is None:
            first_large = index
        if first_fraction is not None and first_large is not None:
            bad = numbers[index]  # float64 would round the large integer and reorder it
            break
    with folder() as tmp:
        path = tmp / "reviews_Fuzz_5.json"
        path.write_text(text, "utf-8")
        if bad is not None:
            with pytest.raises(MalformedRowError) as info:
                read_amazon_reviews(path)
            assert info.value.path == path and info.value.line == bad, str(info.value)
            assert len(str(info.value)) < 400
            return
        got = read_amazon_reviews(path)
    assert got.user.tolist() == [row.user for row in rows]
    assert got.item.tolist() == [row.item for row in rows]
    assert got.timestamp.tolist() == times_written


# ------------------------------------------------------------ arbitrary content


READERS = {
    "ratings.dat": read_movielens_dat,
    "u.data": read_movielens_100k,
    "seq.txt": read_sequences,
    "ratings_Fuzz.csv": read_amazon_ratings,
    "reviews_Fuzz_5.json": read_amazon_reviews,
    "d.csv": lambda path: read_table(path, "user", "item", "time"),
}


@settings(FUZZ, max_examples=150)
@given(
    st.sampled_from(sorted(READERS)),
    st.one_of(
        st.binary(max_size=300),
        st.text(alphabet="ab1 :,\t\n\r\"'{}[]-.e", max_size=300),
        st.text(max_size=200).map(lambda t: "user,item,time\n" + t),
    ),
)
def test_any_content_reads_or_fails_with_a_data_error(name: str, content: bytes | str) -> None:
    """Whatever the bytes, the only failure is a DataError that names the file."""
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    with folder() as tmp:
        path = tmp / name
        path.write_bytes(raw)
        try:
            got = READERS[name](path)
        except DataError as error:
            assert str(path) in str(error) and len(str(error)) < 600
            return
    lines = raw.count(b"\n") + 1
    assert 0 < len(got) <= lines * max(1, raw.count(b" ") + raw.count(b"\t") + 1)
    assert all(user and user == user.strip() for user in got.user.tolist())
    assert all(item and item == item.strip() for item in got.item.tolist())
