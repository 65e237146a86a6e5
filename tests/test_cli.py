import json
from pathlib import Path

import pytest

from hymoerec.cli import main


def test_stats_prints_the_protocol_table(shared_data: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        [
            "data",
            "stats",
            "ml-100k",
            "--data-dir",
            str(shared_data),
            "--cache-dir",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1349, 99_287)


def test_evaluate_baselines_beat_chance(shared_data: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    scores = {}
    for model in ("pop", "transition"):
        code = main(
            [
                "evaluate",
                "--model",
                model,
                "--dataset",
                "ml-100k",
                "--data-dir",
                str(shared_data),
                "--cache-dir",
                str(tmp_path),
                "--json",
            ]
        )
        assert code == 0
        report = json.loads(capsys.readouterr().out)
        assert report["protocol"] == "full ranking, history items ranked"
        scores[model] = report["metrics"]["test"]["HR@10"]
    chance = 10 / 1349
    assert scores["pop"] > 2 * chance
    assert scores["transition"] > scores["pop"]


def test_malformed_file_fails_cleanly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::10::5::978300760\n1::11::4\n")
    cache = tmp_path / "cache"
    code = main(["data", "prepare", str(ratings), "--cache-dir", str(cache)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(ratings) in err and "line 2" in err
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_dataset_names_the_files(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["data", "stats", "ml-1m", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ratings.dat or sequences.txt" in err and "grouplens.org" in err


def test_bad_option_exits_non_zero(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", "nonsense", "--dataset", "ml-1m"])
    assert exit_info.value.code != 0
    assert main(["evaluate", "--model", "pop", "--dataset", "ml-1m", "--metrics", "HR@0"]) == 2
    assert "bad metric" in capsys.readouterr().err


def test_evaluate_honours_its_options_on_a_run(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def report(*options: str) -> dict:  # type: ignore[type-arg]
        assert main(["evaluate", str(tiny_run), "--json", *options]) == 0
        return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    default = report()
    assert default["protocol"] == "full ranking, history items ranked"
    assert list(default["metrics"]["test"]) == ["HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@10"]
    assert list(report("--metrics", "NDCG@20")["metrics"]["valid"]) == ["NDCG@20"]
    # the batch size changes how users are grouped, never their ranks
    assert report("--batch-size", "7")["metrics"] == default["metrics"]
    # a history cut to its last item is another input: other metrics
    assert report("--max-len", "1")["metrics"] != default["metrics"]
    assert main(["evaluate", str(tiny_run), "--min-rating", "4"]) == 2
    assert "--min-rating: a run is evaluated on the data it was trained on" in (
        capsys.readouterr().err
    )


def test_demo_trains_on_the_data_it_describes(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from hymoerec.data import cache

    common = ["demo", "ml-100k", "--data-dir", str(shared_data), "--cache-dir", str(tmp_path)]
    assert main([*common, "--epochs", "0"]) == 2  # not the 5 epochs of the default
    assert "train.epochs=0: must be at least 1" in capsys.readouterr().err
    out = tmp_path / "demo"
    options = ["--user-core", "20", "--epochs", "1", "--threads", "1", "--out", str(out)]
    assert main([*common, *options]) == 0
    printed = capsys.readouterr().out
    assert "training HyMoERec for 1 epoch (" in printed
    users = int(printed.splitlines()[2].split("|")[1].replace(",", ""))
    assert users == cache.load(out / "dataset").num_users < 943  # trained on the 20-core data
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["user_core"] == 20


def test_one_table_layout_numbers_right_text_left() -> None:
    from hymoerec.cli.tables import plural, table

    text = table(["name", "users", "NDCG@10"], [["ml-1m", 6040, 0.123456], ["beauty", 22363, 0.5]])
    assert text.splitlines() == [
        "name   |  users | NDCG@10",
        "-------+--------+--------",
        "ml-1m  |  6,040 |  0.1235",
        "beauty | 22,363 |  0.5000",
    ]
    assert (plural(1, "run"), plural(1200, "run")) == ("1 run", "1,200 runs")
