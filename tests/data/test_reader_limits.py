"""Inputs at the edges of what the readers and the registry accept: each gives the right
result or one clear DataError naming the file (and line), never a traceback."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hymoerec.cli import main
from hymoerec.data import cache
from hymoerec.data.errors import DataError, MalformedRowError
from hymoerec.data.protocol import ProtocolConfig
from hymoerec.data.readers import read_amazon_reviews, read_sequences, read_table
from hymoerec.data.registry import resolve

SMALL = ProtocolConfig(user_core=3, item_core=1)


def table_file(path: Path, header: str = "user,item,time") -> Path:
    rows = [f"u{u},i{i},{i}" for u in range(4) for i in range(3)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


# ------------------------------------------------------------------ options (item 7)

# rows in u.data's layout (ratings 1-5, Unix timestamps): the content says which format
UDATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


@pytest.mark.parametrize(
    ("name", "content", "format", "options", "message"),
    [
        ("u.data", UDATA, None, {"user_col": "u"}, "--user-col does not apply to format"),
        ("s.txt", "u a b c\n", "sequences", {"min_rating": 3.0}, "--min-rating does not apply"),
        ("s.txt", "u a b c\n", "sequences", {"user_col": "u"}, "--user-col does not apply"),
        ("d.csv", "who,what\n", "table", {}, "no usual name for the user column"),
        ("d.csv", "who,what\n", "table", {"user_col": "who"}, "no usual name for the item"),
    ],
)
def test_options_a_format_does_not_take_are_refused_by_flag(
    tmp_path: Path,
    name: str,
    content: str,
    format: str | None,
    options: dict[str, object],
    message: str,
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        resolve(str(path), format=format, options=options)
    assert str(path) in str(info.value)


def test_named_dataset_applies_the_options_given(tmp_path: Path) -> None:
    (tmp_path / "ml-100k").mkdir()
    rows = [f"{u}\t{10 + i}\t{5 if i < 3 else 1}\t{100 + i}" for u in range(4) for i in range(4)]
    (tmp_path / "ml-100k" / "u.data").write_text("\n".join(rows) + "\n")
    source = resolve("ml-100k", tmp_path, options={"min_rating": 4.0})
    assert len(source.read()) == 12  # the rating-1 rows are gone
    with pytest.raises(DataError, match="--user-col: ml-100k is a named dataset"):
        resolve("ml-100k", tmp_path, options={"user_col": "user"})
    with pytest.raises(DataError, match="--format: ml-100k is a named dataset"):
        resolve("ml-100k", tmp_path, format="table")


def test_table_time_column_is_optional(tmp_path: Path) -> None:
    got = read_table(table_file(tmp_path / "d.csv"), "user", "item")
    assert got.timestamp.tolist() == list(range(12))  # the file's order


def test_cli_option_errors_are_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "seq.txt"
    path.write_text("u a b c\n")
    flags = ["--format", "sequences", "--min-rating", "3", "--cache-dir", str(tmp_path)]
    code = main(["data", "stats", str(path), *flags])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--min-rating" in err and str(path) in err


# --------------------------------------------------------------- parsers (items 7, 9)


def test_csv_field_over_128_kb_reads(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    rows = [f"u{u},i{i},{i},{'x' * 200_000}" for u in range(2) for i in range(3)]
    path.write_text("user,item,time,text\n" + "\n".join(rows) + "\n")
    limit = csv.field_size_limit()
    got = read_table(path, "user", "item", "time")
    assert got.user.tolist() == ["u0"] * 3 + ["u1"] * 3
    assert csv.field_size_limit() == limit  # the process-wide setting is put back...
    path.write_text(path.read_text() + "u9,i0\n")
    with pytest.raises(MalformedRowError):
        read_table(path, "user", "item", "time")
    assert csv.field_size_limit() == limit  # ...also when the read fails


def test_unclosed_quote_is_reported_where_its_row_starts(tmp_path: Path) -> None:
    path = table_file(tmp_path / "q.csv")
    lines = path.read_text().splitlines()
    lines[4] = 'u1,"i0,0'  # line 5
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedRowError) as info:
        read_table(path, "user", "item", "time")
    assert info.value.line == 5 and "not closed" in info.value.problem


def test_separator_error_names_a_cli_remedy(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"name the file \.csv") as info:
        read_table(table_file(tmp_path / "d.txt"), "user", "item", "time")
    assert "pass sep=" not in str(info.value)


def reviews(path: Path, second: str) -> Path:
    lines = [
        json.dumps({"reviewerID": f"u{u}", "asin": f"i{i}", "unixReviewTime": 100 + i})
        for u in range(2)
        for i in range(3)
    ]
    lines[1] = second
    path.write_text("\n".join(lines) + "\n")
    return path


def test_deeply_nested_json_is_an_error_at_its_line(tmp_path: Path) -> None:
    nested = '{"reviewerID": "u0", "asin": "i1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(MalformedRowError) as info:
        read_amazon_reviews(reviews(tmp_path / "reviews_X_5.json", nested))
    assert info.value.line == 2 and "nested too deeply" in info.value.problem


def test_huge_number_in_a_review_is_an_error_at_its_line(tmp_path: Path) -> None:
    huge = '{"reviewerID": "u0", "asin": "i1", "unixReviewTime": ' + "9" * 5000 + "}"
    with pytest.raises(MalformedRowError) as info:
        read_amazon_reviews(reviews(tmp_path / "reviews_X_5.json", huge))
    assert info.value.line == 2 and len(str(info.value)) < 300


def test_huge_line_gives_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("u1 a b c\n" + "x" * 1_000_000 + "\nu2 a b c\n")
    with pytest.raises(MalformedRowError) as info:
        read_sequences(path)
    assert info.value.line == 2 and "1,000,000 characters" in str(info.value)
    assert len(str(info.value)) < 300


def test_parquet_list_column_is_an_error_naming_it(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"user": [[1], [2]], "item": ["a", "b"]}), path)
    with pytest.raises(DataError, match="column 'user' has type list"):
        read_table(path, "user", "item")


# ----------------------------------------------------------- silent changes (item 8)


def test_uint64_parquet_timestamps_past_int64_are_refused(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    times = pa.array([5, 2**63, 2**64 - 1], type=pa.uint64())
    pq.write_table(pa.table({"user": ["a"] * 3, "item": ["x", "y", "z"], "t": times}), path)
    with pytest.raises(DataError, match="row 2 does not fit in int64"):
        read_table(path, "user", "item", "t")
    small = pa.array([7, 5, 6], type=pa.uint64())  # uint64 that fits reads as int64
    pq.write_table(pa.table({"user": ["a"] * 3, "item": ["x", "y", "z"], "t": small}), path)
    assert read_table(path, "user", "item", "t").timestamp.tolist() == [7, 5, 6]


def test_csv_timestamps_past_int64_are_refused_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user,item,t\na,early,1\na,late,9223372036854775809\n")
    with pytest.raises(MalformedRowError) as info:
        read_table(path, "user", "item", "t")
    assert info.value.line == 3 and "does not fit in int64" in info.value.problem


def test_large_integer_beside_a_fraction_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user,item,t\na,x,9007199254740993\na,y,0.5\n")
    with pytest.raises(MalformedRowError) as info:
        read_table(path, "user", "item", "t")
    assert info.value.line == 3 and "line 3" in info.value.problem  # the fraction's line


def test_ids_are_stripped_of_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("user,item,t\n4,a,1\n4,b,2\n 4,c,3\n5 , a,1\n5,b,2\n5,c ,3\n")
    data = cache.prepare(resolve(str(path), options=_cols()), SMALL, use_cache=False)
    assert data.users.external.tolist() == ["4", "5"]
    assert data.num_interactions == 6
    (tmp_path / "blank.csv").write_text("user,item,t\n  ,a,1\n")
    with pytest.raises(MalformedRowError, match="line 2: empty user id"):
        read_table(tmp_path / "blank.csv", "user", "item", "t")


def _cols() -> dict[str, object]:
    return {"user_col": "user", "item_col": "item", "time_col": "t"}


def test_cache_key_covers_the_separator(tmp_path: Path) -> None:
    # comma fields user,item,t,x then tab fields user item t: both readings are valid
    rows = [f"cu{r % 6},ci{r % 9},{r},x\ttu{r % 12}\tti{(r * 5) % 12}\t{r}" for r in range(36)]
    content = "user,item,t,x\tuser\titem\tt\n" + "\n".join(rows) + "\n"
    (tmp_path / "d.csv").write_text(content)
    (tmp_path / "d.tsv").write_text(content)
    root = tmp_path / "cache"
    as_csv = cache.prepare(resolve(str(tmp_path / "d.csv"), options=_cols()), SMALL, root)
    as_tsv = cache.prepare(resolve(str(tmp_path / "d.tsv"), options=_cols()), SMALL, root)
    assert (as_csv.num_users, as_csv.num_items) == (6, 9)
    assert (as_tsv.num_users, as_tsv.num_items) == (12, 12)
    assert np.all(np.char.startswith(as_tsv.users.external.astype(str), "tu"))


def test_long_fields_do_not_stop_the_format_sniffer(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The format is recognised from the first lines, which may hold a field over the
    csv module's 128 KiB default: found, then read, with no --format given."""
    path = tmp_path / "reviews.csv"
    rows = [f"u{u},i{i},{i},{'x' * 200_000}" for u in range(4) for i in range(3)]
    path.write_text("user,item,time,text\n" + "\n".join(rows) + "\n")
    args = ["data", "stats", str(path), "--cache-dir", str(tmp_path / "c"), "--json"]
    args += ["--user-core", "3", "--item-core", "1"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 12
    huge = tmp_path / "seq.txt"
    huge.write_text("u0 " + "y" * 5_000_000 + "\nu1 a b\n")
    assert main(["data", "stats", str(huge), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and len(err) < 500
