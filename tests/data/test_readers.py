"""Readers: exact parses of small real-format fixtures, precise errors, the shared files."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

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
from tests.conftest import shared_path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def assert_parsed(
    got: Interactions,
    user: list[str],
    item: list[str],
    timestamp: list[int] | list[float],
    rating: list[float] | None,
) -> None:
    assert got.user.tolist() == user
    assert got.item.tolist() == item
    assert got.timestamp.tolist() == timestamp
    if rating is None:
        assert got.rating is None
    else:
        assert got.rating is not None
        assert got.rating.dtype == np.float64
        assert got.rating.tolist() == rating
    assert got.user.dtype.kind == got.item.dtype.kind == "U"


def assert_malformed(
    read: Callable[[], object], path: Path, line: int, problem: str
) -> MalformedRowError:
    with pytest.raises(MalformedRowError) as info:
        read()
    assert info.value.path == path
    assert info.value.line == line
    assert problem in info.value.problem
    assert f"{path}, line {line}: " in str(info.value)
    return info.value


# ------------------------------------------------------------------- MovieLens-1M .dat

DAT = "6040::858::4::956703932\n1::1193::5::978300760\n1::661::3::978302109\n"


def test_dat_parses_exact_values_in_file_order(tmp_path: Path) -> None:
    got = read_movielens_dat(write(tmp_path / "ratings.dat", DAT))
    assert_parsed(
        got,
        ["6040", "1", "1"],
        ["858", "1193", "661"],
        [956703932, 978300760, 978302109],
        [4.0, 5.0, 3.0],
    )
    assert got.timestamp.dtype == np.int64


def test_dat_crlf_and_blank_lines(tmp_path: Path) -> None:
    text = "\r\n1::10::5::100\r\n\r\n   \r\n2::20::4::200\r\n\r\n\r\n"
    got = read_movielens_dat(write(tmp_path / "ratings.dat", text))
    assert_parsed(got, ["1", "2"], ["10", "20"], [100, 200], [5.0, 4.0])


def test_dat_fractional_timestamps_become_float(tmp_path: Path) -> None:
    got = read_movielens_dat(write(tmp_path / "ratings.dat", "1::10::5::100.5\n1::11::5::101\n"))
    assert got.timestamp.dtype == np.float64
    assert got.timestamp.tolist() == [100.5, 101.0]


def test_dat_integral_float_timestamps_stay_int(tmp_path: Path) -> None:
    got = read_movielens_dat(write(tmp_path / "ratings.dat", "1::10::5::100.0\n1::11::5::1e3\n"))
    assert got.timestamp.dtype == np.int64
    assert got.timestamp.tolist() == [100, 1000]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2::20::4", "expected 4 fields separated by '::', got 3"),
        ("2::20::4::200::9", "expected 4 fields separated by '::', got 5"),
        ("2::20::four::200", "rating 'four' is not a number"),
        ("2::20::nan::200", "rating 'nan' is not a finite number"),
        ("2::20::4::yesterday", "timestamp 'yesterday' is not a number"),
        ("::20::4::200", "empty user id"),
        ("2::::4::200", "empty item id"),
    ],
)
def test_dat_malformed_row_names_file_line_and_problem(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = write(tmp_path / "ratings.dat", f"1::10::5::100\n\n{line}\n3::30::3::300\n")
    assert_malformed(lambda: read_movielens_dat(path), path, 3, problem)


def test_dat_min_rating_drops_lower_rows(tmp_path: Path) -> None:
    got = read_movielens_dat(write(tmp_path / "ratings.dat", DAT), min_rating=4)
    assert_parsed(got, ["6040", "1"], ["858", "1193"], [956703932, 978300760], [4.0, 5.0])


def test_dat_min_rating_dropping_everything_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", DAT)
    with pytest.raises(DataError, match="no interactions with rating >= 6"):
        read_movielens_dat(path, min_rating=6)


def test_dat_accepts_utf8_file_by_default_and_exactly_with_encoding(tmp_path: Path) -> None:
    # A UTF-8 file with a byte-order mark and a non-ASCII id: ISO-8859-1 decodes any byte.
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"\xef\xbb\xbf" + "1::10::5::100\nZoë::11::4::101\n".encode())
    latin = read_movielens_dat(path)
    assert latin.user.tolist() == ["1", "ZoÃ«"]  # the BOM is skipped, not glued to "1"
    assert latin.item.tolist() == ["10", "11"]
    utf8 = read_movielens_dat(path, encoding="utf-8")
    assert_parsed(utf8, ["1", "Zoë"], ["10", "11"], [100, 101], [5.0, 4.0])


def test_dat_original_latin1_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes("Jos\xe9::10::5::100\n".encode("iso-8859-1"))
    assert read_movielens_dat(path).user.tolist() == ["José"]


def test_dat_gzipped_is_detected_by_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"  # no .gz suffix on purpose
    path.write_bytes(gzip.compress(DAT.encode()))
    assert read_movielens_dat(path).item.tolist() == ["858", "1193", "661"]


# --------------------------------------------------------------------- MovieLens-100K


def test_100k_parses_exact_values_in_file_order(tmp_path: Path) -> None:
    text = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
    got = read_movielens_100k(write(tmp_path / "u.data", text))
    assert_parsed(
        got,
        ["196", "186", "22"],
        ["242", "302", "377"],
        [881250949, 891717742, 878887116],
        [3.0, 3.0, 1.0],
    )


def test_100k_min_rating_and_crlf(tmp_path: Path) -> None:
    text = "196\t242\t3\t881250949\r\n22\t377\t1\t878887116\r\n\r\n"
    got = read_movielens_100k(write(tmp_path / "u.data", text), min_rating=2)
    assert_parsed(got, ["196"], ["242"], [881250949], [3.0])


def test_100k_malformed_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\n")
    assert_malformed(
        lambda: read_movielens_100k(path), path, 2, "expected 4 fields separated by tabs, got 3"
    )
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\tnoon\n")
    assert_malformed(lambda: read_movielens_100k(path), path, 2, "timestamp 'noon' is not a number")


# ------------------------------------------------------------------------- sequences


def test_sequences_one_line_per_user(tmp_path: Path) -> None:
    got = read_sequences(write(tmp_path / "sequences.txt", "1 3186 1721 1022\n2 1198 1217\n"))
    assert_parsed(
        got,
        ["1", "1", "1", "2", "2"],
        ["3186", "1721", "1022", "1198", "1217"],
        [0, 1, 2, 3, 4],
        None,
    )
    assert got.timestamp.dtype == np.int64


def test_sequences_sasrec_pairs_concatenate_per_user_in_file_order(tmp_path: Path) -> None:
    text = "1 10\n1 11\n2 20\n1 12\n2 21\n"
    got = read_sequences(write(tmp_path / "Beauty.txt", text))
    assert_parsed(
        got, ["1", "1", "2", "1", "2"], ["10", "11", "20", "12", "21"], [0, 1, 2, 3, 4], None
    )
    order = np.argsort(got.user, kind="stable")  # what the protocol's stable sort sees
    assert got.item[order].tolist() == ["10", "11", "12", "20", "21"]


def test_sequences_tabs_crlf_and_blank_lines(tmp_path: Path) -> None:
    got = read_sequences(write(tmp_path / "seq.txt", "\r\na\tx  y\r\n\r\nb z\r\n\r\n"))
    assert_parsed(got, ["a", "a", "b"], ["x", "y", "z"], [0, 1, 2], None)


def test_sequences_user_without_items_is_malformed(tmp_path: Path) -> None:
    path = write(tmp_path / "seq.txt", "1 10 11\n\n7\n8 80\n")
    assert_malformed(lambda: read_sequences(path), path, 3, "user '7' has no items")


# ------------------------------------------------------------------- Amazon ratings CSV


def test_amazon_ratings_parses_exact_values(tmp_path: Path) -> None:
    text = 'A39HTATAQ9V7YF,0205616461,5.0,1369699200\n"A3JM6GV9MNOF9X",0558925278,3.0,1355443200\n'
    got = read_amazon_ratings(write(tmp_path / "ratings_Beauty.csv", text))
    assert_parsed(
        got,
        ["A39HTATAQ9V7YF", "A3JM6GV9MNOF9X"],
        ["0205616461", "0558925278"],  # leading zeros kept: ids are strings
        [1369699200, 1355443200],
        [5.0, 3.0],
    )


def test_amazon_ratings_min_rating_and_errors(tmp_path: Path) -> None:
    text = "u1,i1,5.0,10\r\nu2,i2,2.0,20\r\n"
    got = read_amazon_ratings(write(tmp_path / "r.csv", text), min_rating=3.0)
    assert_parsed(got, ["u1"], ["i1"], [10], [5.0])
    path = write(tmp_path / "bad.csv", "u1,i1,5.0,10\n\nu2,i2,2.0\n")
    assert_malformed(
        lambda: read_amazon_ratings(path), path, 3, "expected 4 fields separated by ',', got 3"
    )
    path = write(tmp_path / "bad.csv", "u1,i1,five,10\n")
    assert_malformed(lambda: read_amazon_ratings(path), path, 1, "rating 'five' is not a number")
    path = write(tmp_path / "bad.csv", "u1,i1,5,10\n,i2,5,10\n")
    assert_malformed(lambda: read_amazon_ratings(path), path, 2, "empty user id")


# ------------------------------------------------------------------ Amazon reviews JSON

REVIEWS = [
    {
        "reviewerID": "A1YJEY40YUW4SE",
        "asin": "7806397051",
        "reviewerName": "Andrea",
        "helpful": [3, 4],
        "reviewText": "Very oily and creamy. Not at all what I expected...",
        "overall": 1.0,
        "summary": "Don't waste your money",
        "unixReviewTime": 1391040000,
        "reviewTime": "01 30, 2014",
    },
    {
        "reviewerID": "A60XNB876KYML",
        "asin": "7806397051",
        "helpful": [1, 1],
        "reviewText": "This palette was a decent price",
        "overall": 3.0,
        "unixReviewTime": 1397779200,
    },
    {
        "reviewerID": "A3G6XNM240RMWA",
        "asin": "B00004TUBL",
        "overall": 4.0,
        "unixReviewTime": 1378425600,
    },
]


def reviews_text(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def assert_reviews(got: Interactions, rating: list[float] | None = None) -> None:
    assert_parsed(
        got,
        ["A1YJEY40YUW4SE", "A60XNB876KYML", "A3G6XNM240RMWA"],
        ["7806397051", "7806397051", "B00004TUBL"],
        [1391040000, 1397779200, 1378425600],
        [1.0, 3.0, 4.0] if rating is None else rating,
    )


def test_amazon_reviews_plain_json(tmp_path: Path) -> None:
    assert_reviews(
        read_amazon_reviews(write(tmp_path / "reviews_Beauty_5.json", reviews_text(REVIEWS)))
    )


def test_amazon_reviews_gzipped(tmp_path: Path) -> None:
    path = tmp_path / "reviews_Beauty_5.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(reviews_text(REVIEWS))
    assert_reviews(read_amazon_reviews(path))


def test_amazon_reviews_loose_python_literals(tmp_path: Path) -> None:
    loose = "".join(repr(row) + "\n" for row in REVIEWS)  # single-quoted dicts
    assert "'reviewerID'" in loose
    assert_reviews(read_amazon_reviews(write(tmp_path / "reviews.json", loose)))


def test_amazon_reviews_without_overall_have_no_rating(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "overall"} for row in REVIEWS]
    path = write(tmp_path / "reviews.json", reviews_text(rows))
    got = read_amazon_reviews(path)
    assert got.rating is None
    assert got.user.tolist() == ["A1YJEY40YUW4SE", "A60XNB876KYML", "A3G6XNM240RMWA"]
    with pytest.raises(DataError, match="no review has 'overall'"):
        read_amazon_reviews(path, min_rating=4)


def test_amazon_reviews_overall_on_some_rows_only_is_malformed(tmp_path: Path) -> None:
    rows = [REVIEWS[0], {k: v for k, v in REVIEWS[1].items() if k != "overall"}, REVIEWS[2]]
    path = write(tmp_path / "reviews.json", reviews_text(rows))
    assert_malformed(lambda: read_amazon_reviews(path), path, 2, "missing key 'overall'")


def test_amazon_reviews_min_rating(tmp_path: Path) -> None:
    got = read_amazon_reviews(write(tmp_path / "r.json", reviews_text(REVIEWS)), min_rating=3)
    assert got.user.tolist() == ["A60XNB876KYML", "A3G6XNM240RMWA"]
    assert got.rating is not None and got.rating.tolist() == [3.0, 4.0]


def test_amazon_reviews_malformed_rows(tmp_path: Path) -> None:
    no_asin = {k: v for k, v in REVIEWS[1].items() if k != "asin"}
    path = write(tmp_path / "r.json", json.dumps(REVIEWS[0]) + "\n\n" + json.dumps(no_asin) + "\n")
    assert_malformed(lambda: read_amazon_reviews(path), path, 3, "missing key 'asin'")
    path = write(tmp_path / "r.json", reviews_text(REVIEWS[:2]) + '{"reviewerID": "A", "asin":\n')
    assert_malformed(lambda: read_amazon_reviews(path), path, 3, "invalid JSON")
    path = write(tmp_path / "r.json", "[1, 2]\n")
    assert_malformed(lambda: read_amazon_reviews(path), path, 1, "expected a JSON object, got list")
    bad_time = dict(REVIEWS[0], unixReviewTime="soon")
    path = write(tmp_path / "r.json", reviews_text([bad_time]))
    assert_malformed(lambda: read_amazon_reviews(path), path, 1, "timestamp 'soon' is not a number")


def test_amazon_reviews_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json.gz"
    path.write_bytes(gzip.compress(reviews_text(REVIEWS * 50).encode())[:-40])
    with pytest.raises(DataError, match=str(path)):
        read_amazon_reviews(path)


# ------------------------------------------------------------------------ read_table


def test_table_tsv_separator_from_suffix(tmp_path: Path) -> None:
    path = write(
        tmp_path / "interactions.tsv",
        "user_id\titem_id\ttimestamp\n1\t1\t1318896000\n1\t2\t1318896000\n",
    )
    got = read_table(path, "user_id", "item_id", "timestamp")
    assert_parsed(got, ["1", "1"], ["1", "2"], [1318896000, 1318896000], None)


def test_table_csv_with_quotes_ratings_and_column_order(tmp_path: Path) -> None:
    text = 'ts,score,item,user,note\n20,4.5,"i,1",u1,"a ""quoted"" note"\n10,2,i2,u2,\n'
    path = write(tmp_path / "log.csv", text)
    got = read_table(path, "user", "item", "ts", rating_col="score")
    assert_parsed(got, ["u1", "u2"], ["i,1", "i2"], [20, 10], [4.5, 2.0])
    kept = read_table(path, "user", "item", "ts", rating_col="score", min_rating=3)
    assert_parsed(kept, ["u1"], ["i,1"], [20], [4.5])


def test_table_iso_timestamps_are_utc_seconds(tmp_path: Path) -> None:
    text = (
        "u;i;when\n"
        "a;x;1970-01-02\n"
        "a;y;1970-01-01T00:01:00\n"
        "a;z;1970-01-01T01:00:00Z\n"
        "a;w;1970-01-01T01:00:00+01:00\n"
        "a;v;1970-01-01 00:00:07.900\n"
    )
    got = read_table(write(tmp_path / "log.txt", text), "u", "i", "when", sep=";")
    assert got.timestamp.dtype == np.int64
    assert got.timestamp.tolist() == [86400, 60, 3600, 0, 7]


def test_table_without_time_column_uses_file_order(tmp_path: Path) -> None:
    got = read_table(write(tmp_path / "log.csv", "u,i\nb,x\na,y\n"), "u", "i", None)
    assert_parsed(got, ["b", "a"], ["x", "y"], [0, 1], None)


def test_table_missing_column_names_it_and_lists_found(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user,item,time\n1,2,3\n")
    with pytest.raises(DataError) as info:
        read_table(path, "user", "item_id", "time")
    message = str(info.value)
    assert str(path) in message
    assert "'item_id'" in message
    assert "'user', 'item', 'time'" in message


def test_table_unknown_suffix_needs_sep(tmp_path: Path) -> None:
    path = write(tmp_path / "log.txt", "u,i,t\n1,2,3\n")
    with pytest.raises(DataError, match=r"name the file \.csv \(commas\) or \.tsv"):
        read_table(path, "u", "i", "t")
    assert read_table(path, "u", "i", "t", sep=",").user.tolist() == ["1"]


def test_table_malformed_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "log.tsv", "u\ti\tt\n1\t2\t3\n\n1\t2\n")
    assert_malformed(
        lambda: read_table(path, "u", "i", "t"),
        path,
        4,
        "expected 3 fields separated by '\\t', got 2",
    )
    path = write(tmp_path / "log.tsv", "u\ti\tt\n1\t2\tlater\n")
    assert_malformed(
        lambda: read_table(path, "u", "i", "t"), path, 2, "not a number or an ISO-8601 date"
    )
    path = write(tmp_path / "log.tsv", "u\ti\tt\n1\t\t3\n")
    assert_malformed(lambda: read_table(path, "u", "i", "t"), path, 2, "empty item id")


def test_table_min_rating_needs_rating_column(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "u,i,t\n1,2,3\n")
    with pytest.raises(DataError, match="rating_col"):
        read_table(path, "u", "i", "t", min_rating=3)


def test_table_header_only_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "u,i,t\n\n")
    with pytest.raises(DataError, match="no interactions"):
        read_table(path, "u", "i", "t")


# ------------------------------------------------------------------------ Parquet


def pyarrow_modules() -> tuple[Any, Any]:
    pa = pytest.importorskip("pyarrow", reason="Parquet support needs pyarrow")
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet support needs pyarrow")
    return pa, pq


def test_table_parquet(tmp_path: Path) -> None:
    pa, pq = pyarrow_modules()
    path = tmp_path / "log.parquet"
    table = pa.table(
        {
            "user": pa.array([7, 3, 7], pa.int64()),
            "item": pa.array(["b", "a", "c"]),
            "time": pa.array([30, 10, 20], pa.int64()),
            "stars": pa.array([5.0, 1.0, 4.0]),
        }
    )
    pq.write_table(table, path)
    got = read_table(path, "user", "item", "time", rating_col="stars")
    assert_parsed(got, ["7", "3", "7"], ["b", "a", "c"], [30, 10, 20], [5.0, 1.0, 4.0])
    assert got.timestamp.dtype == np.int64
    kept = read_table(path, "user", "item", None, rating_col="stars", min_rating=4)
    assert_parsed(kept, ["7", "7"], ["b", "c"], [0, 2], [5.0, 4.0])


def test_table_parquet_timestamp_types(tmp_path: Path) -> None:
    pa, pq = pyarrow_modules()
    path = tmp_path / "log.parquet"
    table = pa.table(
        {
            "u": ["a", "a"],
            "i": ["x", "y"],
            "ts": pa.array([1_500, 61_999], pa.timestamp("ms")),
            "day": pa.array([1, 2], pa.date32()),
            "iso": ["1970-01-01T00:00:05", "1970-01-02"],
            "frac": [1.5, 2.0],
        }
    )
    pq.write_table(table, path)
    assert read_table(path, "u", "i", "ts").timestamp.tolist() == [1, 61]
    assert read_table(path, "u", "i", "day").timestamp.tolist() == [86400, 172800]
    assert read_table(path, "u", "i", "iso").timestamp.tolist() == [5, 86400]
    frac = read_table(path, "u", "i", "frac").timestamp
    assert frac.dtype == np.float64 and frac.tolist() == [1.5, 2.0]


def test_table_parquet_missing_column_and_nulls(tmp_path: Path) -> None:
    pa, pq = pyarrow_modules()
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"u": ["a", None], "i": ["x", "y"]}), path)
    with pytest.raises(DataError, match=r"no column 'user' \(columns found: 'u', 'i'\)"):
        read_table(path, "user", "i", None)
    with pytest.raises(DataError, match="column 'u' is null in row 2"):
        read_table(path, "u", "i", None)


def test_table_not_parquet_is_a_data_error(tmp_path: Path) -> None:
    pyarrow_modules()
    path = write(tmp_path / "log.parquet", "u,i,t\n1,2,3\n")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_table(path, "u", "i", "t")


def test_table_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pa, pq = pyarrow_modules()
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"u": ["a"], "i": ["x"]}), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"hymoerec\[parquet\]"):
        read_table(path, "u", "i", None)


# --------------------------------------------------------------- errors common to all

READERS: dict[str, Callable[[Path], Interactions]] = {
    "dat": read_movielens_dat,
    "100k": read_movielens_100k,
    "sequences": read_sequences,
    "amazon_ratings": read_amazon_ratings,
    "amazon_reviews": read_amazon_reviews,
    "table": lambda path: read_table(path, "u", "i", "t", sep=","),
}
UTF8_READERS = [name for name in READERS if name != "dat"]


@pytest.mark.parametrize("name", READERS)
def test_missing_file_is_a_data_error_naming_the_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / "nowhere" / "ratings.txt"
    with pytest.raises(DataError, match="no such file") as info:
        READERS[name](path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", READERS)
@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n"])
def test_empty_file_is_a_data_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="no interactions") as info:
        READERS[name](path)
    assert str(path) in str(info.value)


GOOD_LINES = {
    "100k": b"1\t2\t3\t4\n",
    "sequences": b"1 2 3\n",
    "amazon_ratings": b"u,i,5,4\n",
    "amazon_reviews": b'{"reviewerID": "u", "asin": "i", "unixReviewTime": 4}\n',
    "table": b"u,i,t\n",
}


@pytest.mark.parametrize("name", UTF8_READERS)
def test_invalid_utf8_names_byte_and_line(tmp_path: Path, name: str) -> None:
    good = GOOD_LINES[name]
    path = tmp_path / "latin1.txt"
    path.write_bytes(good + b"\n" + b"Jos\xe9 " + good)
    with pytest.raises(DataError) as info:
        READERS[name](path)
    message = str(info.value)
    assert not isinstance(info.value, MalformedRowError)
    assert message.startswith(f"{path}: not valid utf-8 at byte {len(good) + 1 + 3} (line 3)")
    assert "encoding=" in message


@pytest.mark.parametrize("name", UTF8_READERS)
def test_utf8_byte_order_mark_is_skipped(tmp_path: Path, name: str) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINES[name] + GOOD_LINES[name].replace(b"t\n", b"1\n"))
    assert len(READERS[name](path)) >= 1


def test_progress_bar_gives_the_same_result(tmp_path: Path) -> None:
    lines = "".join(f"{u}::{i}::{u % 5 + 1}::{u * 10 + i}\n" for u in range(50) for i in range(200))
    path = write(tmp_path / "ratings.dat", lines)
    quiet, shown = read_movielens_dat(path), read_movielens_dat(path, progress=True)
    assert np.array_equal(quiet.item, shown.item)
    assert np.array_equal(quiet.timestamp, shown.timestamp)


# ---------------------------------------------------------------- the shared real files


def test_shared_ml1m_sequences() -> None:
    got = read_sequences(shared_path("ml-1m/sequences.txt"))
    assert len(got) == 1_000_209
    assert len(np.unique(got.user)) == 6_040
    assert len(np.unique(got.item)) == 3_706
    assert got.user[0] == "1" and got.item[:3].tolist() == ["3186", "1721", "1022"]
    assert np.array_equal(got.timestamp, np.arange(1_000_209))


def test_shared_ml100k() -> None:
    got = read_movielens_100k(shared_path("ml-100k/u.data"))
    assert len(got) == 100_000
    assert len(np.unique(got.user)) == 943
    assert len(np.unique(got.item)) == 1_682
    assert (got.user[0], got.item[0], got.timestamp[0]) == ("196", "242", 881250949)
    assert got.rating is not None and set(np.unique(got.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_shared_beauty_interactions() -> None:
    path = shared_path("amazon-beauty/interactions.tsv")
    got = read_table(path, "user_id", "item_id", "timestamp")
    assert len(got) == 198_502
    assert len(np.unique(got.user)) == 22_363
    assert len(np.unique(got.item)) == 12_101
    assert got.timestamp.dtype == np.int64 and got.rating is None
