"""Your own data, end to end: the README's "Your own data" commands, run as written on a
small CSV, a Parquet file and a MovieLens pair in ISO-8859-1, from one working directory;
then the run directories moved, the raw files deleted, and the runs evaluated and asked
for recommendations from another."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from hymoerec.artifacts import write_checksums
from hymoerec.cli import main
from hymoerec.data import cache
from hymoerec.training.run import CHECKED

README = Path(__file__).resolve().parents[1] / "README.md"
USERS, ITEMS, PER_USER = 60, 30, 10
TINY = [
    "model_options.hidden_size=16",
    "train.epochs=1",
    "train.max_len=20",
    "train.batch_size=64",
    "train.threads=1",
]


def readme_commands() -> list[list[str]]:
    """The ``hymoerec`` lines of the README's "Your own data" code block."""
    text = README.read_text()
    section = text[text.index("## Your own data") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("hymoerec ")]


def item_of(user: int, step: int) -> int:
    return (user * 7 + step) % ITEMS + 1  # every item seen by 20 users: 5-core keeps all


def write_files(root: Path) -> None:
    (root / "my-data").mkdir(parents=True)
    csv = ["user_id,item_id,timestamp"]
    for user in range(1, USERS + 1):
        csv += [f"{user},{item_of(user, s)},{1_000_000 + 60 * s}" for s in range(PER_USER)]
    (root / "my-data" / "interactions.csv").write_text("\n".join(csv) + "\n")

    # the same log under other column names, with two low ratings per user to drop
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [
        (f"v{user}", item_of(user, s), 1_000 * s, 2.0 if s % 6 == 5 else 5.0)
        for user in range(1, USERS + 1)
        for s in range(PER_USER + 2)
    ]
    visitor, product, ts, stars = zip(*rows, strict=True)
    table = pa.table({"visitor": visitor, "product": product, "ts": ts, "stars": stars})
    pq.write_table(table, root / "my-data" / "log.parquet")

    ml = root / "ml-1m-download"
    ml.mkdir()
    ratings = [
        f"{user}::{item_of(user, s)}::{1 + s % 5}::{978_300_000 + s}"
        for user in range(1, USERS + 1)
        for s in range(PER_USER)
    ]
    (ml / "ratings.dat").write_text("\n".join(ratings) + "\n")
    movies = [f"{i}::Café n°{i} (1995)::Drama|Comedy" for i in range(1, ITEMS + 1)]
    (ml / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("iso-8859-1"))


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_readme_own_data_commands_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    write_files(work)
    elsewhere.mkdir()
    monkeypatch.setenv("HYMOEREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYMOEREC_DATA", raising=False)
    monkeypatch.chdir(work)
    commands = readme_commands()
    assert [c[0] for c in commands] == [
        "data",
        "train",
        "evaluate",
        "recommend",
        "train",
        "train",
        "recommend",
    ]
    outputs = []
    for command in commands:
        if command[0] == "train":
            tiny = [
                *TINY,
                *(["model_options.moe.router_hidden=8"] if "hymoerec" in command else []),
            ]
            command = [*command, "--quiet", *(x for s in tiny for x in ("--set", s))]
        outputs.append(run(command, capsys))
    by_command = {" ".join(c[:2]): out for c, out in zip(commands, outputs, strict=True)}

    # data stats: the CSV's columns found under their usual names, 5-core keeps everything
    stats = outputs[0]
    assert "format table; user_col 'user_id', item_col 'item_id', time_col 'timestamp'" in stats
    assert re.search(r"interactions\s*\|\s*600\b", stats)
    # evaluate honours --metrics: exactly the metrics asked for, in that order
    evaluated = by_command["evaluate runs/my-run"].splitlines()
    assert re.split(r"\s*\|\s*", evaluated[1].strip()) == ["split", "HR@10", "NDCG@10", "MRR@10"]

    runs = work / "runs"
    # the Parquet run read the renamed columns and dropped the ratings below 4
    rated = cache.load(runs / "rated-run" / "dataset")
    assert rated.num_interactions == USERS * PER_USER  # 720 rows, 120 rated 2.0
    # the MovieLens pair: ISO-8859-1 titles read, the history length that of MovieLens
    ml_config = (runs / "ml-run" / "config.yaml").read_text()
    assert "format: movielens-dat" in ml_config
    assert "Café n°" in outputs[-1]

    # the runs hold absolute paths and their own data: move them, delete the raw files,
    # and use them from another working directory
    moved = tmp_path / "moved"
    shutil.move(str(runs), str(moved))
    shutil.rmtree(work)
    monkeypatch.chdir(elsewhere)
    for name in ("my-run", "rated-run", "ml-run"):
        report = json.loads(
            run(["evaluate", str(moved / name), "--json", "--metrics", "NDCG@20"], capsys)
        )
        assert report["protocol"] == "full ranking, history items ranked"
        assert list(report["metrics"]["test"]) == ["NDCG@20"]
        assert 0 <= report["metrics"]["test"]["NDCG@20"] <= 1
    top = json.loads(run(["recommend", str(moved / "my-run"), "--user", "42", "--json"], capsys))
    seen = {str(item_of(42, s)) for s in range(PER_USER)}
    assert len(top["items"]) == 10 and not seen & {row["item_id"] for row in top["items"]}


def test_a_table_without_usual_column_names_asks_for_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.csv"
    path.write_text("who,what,when\n1,2,3\n")
    assert main(["data", "stats", str(path), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no usual name for the user column" in err and "'who', 'what', 'when'" in err
    assert "--user-col" in err and "Traceback" not in err


def test_the_shared_beauty_table_reads_without_column_options(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shared_data / "amazon-beauty" / "interactions.tsv"
    args = ["data", "stats", str(path), "--cache-dir", str(tmp_path), "--json"]
    by_path = json.loads(run(args, capsys))
    by_name = ["data", "stats", "amazon-beauty", "--data-dir", str(shared_data), "--json"]
    assert json.loads(run([*by_name, "--cache-dir", str(tmp_path)], capsys)) == by_path


def test_min_rating_applies_to_named_datasets(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--min-rating", "4", "--cache-dir", str(tmp_path), "--json"]
    named = ["data", "stats", "ml-100k", "--data-dir", str(shared_data), *common]
    path = ["data", "stats", str(shared_data / "ml-100k" / "u.data"), *common]
    by_name, by_path = json.loads(run(named, capsys)), json.loads(run(path, capsys))
    assert by_name["interactions"] == by_path["interactions"] == 54_413  # not 99,287
    # a threshold that cannot apply is an error, not ignored: ML-1M here is sequences
    assert main(["data", "stats", "ml-1m", "--data-dir", str(shared_data), *common]) == 2
    assert "--min-rating does not apply to format" in capsys.readouterr().err


def test_format_comes_from_the_content_not_the_name(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    udata = tmp_path / "ratings.txt"  # u.data's layout under a sequences-like name
    shutil.copy(shared_data / "ml-100k" / "u.data", udata)
    stats = run(["data", "stats", str(udata), "--cache-dir", str(tmp_path / "c")], capsys)
    assert "format movielens-100k" in stats
    assert re.search(r"interactions\s*\|\s*99,287", stats)  # not 217,968 items-as-ratings
    unsure = tmp_path / "numbers.txt"
    unsure.write_text("1 5 7\n2 6 8\n3 9 1\n")  # user item time? user item item?
    assert main(["data", "stats", str(unsure), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "pass --format" in capsys.readouterr().err


def test_history_length_follows_the_format(tmp_path: Path) -> None:
    from hymoerec.data.registry import resolve

    dat = tmp_path / "ratings.dat"
    dat.write_text("1::10::5::978300760\n")
    table = tmp_path / "log.csv"
    table.write_text("user_id,item_id,timestamp\n1,2,3\n")
    assert (resolve(str(dat)).max_len, resolve(str(table)).max_len) == (200, 50)


def test_a_run_without_its_data_copy_uses_data_dir(
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = tmp_path / "old-run"
    shutil.copytree(tiny_run, old)
    shutil.rmtree(old / "dataset")  # as runs were written before they kept their data
    config = (old / "config.yaml").read_text()
    config = re.sub(r"data_dir: .*", "data_dir: ../nowhere", config)
    (old / "config.yaml").write_text(config)
    write_checksums(old, CHECKED)  # an old run, whose config names a folder that is gone
    monkeypatch.delenv("HYMOEREC_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(old)]) == 2
    assert "none of its files found" in capsys.readouterr().err
    data_dir = tiny_run.parent / "data"
    report = json.loads(run(["evaluate", str(old), "--data-dir", str(data_dir), "--json"], capsys))
    original = json.loads(run(["evaluate", str(tiny_run), "--json"], capsys))
    assert report["metrics"] == original["metrics"]
    assert np.isfinite(report["metrics"]["test"]["NDCG@10"])
    monkeypatch.setenv("HYMOEREC_DATA", str(data_dir))  # the environment points there too
    assert json.loads(run(["evaluate", str(old), "--json"], capsys))["metrics"] == report["metrics"]
    top = run(["recommend", str(old), "--user", "1", "--k", "3"], capsys)
    assert top.startswith("top 3 for user 1")
