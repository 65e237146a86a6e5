"""`hymoerec recommend`, `hymoerec plot` and the errors of `hymoerec serve`."""

import json
from pathlib import Path

import pytest

from hymoerec.cli import main
from hymoerec.recommend import Recommender


def test_recommend_for_a_user_prints_titles(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", str(tiny_run), "--user", "7", "--k", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "top 5 for user 7 (hymoerec on ml-100k, seen items excluded)"
    assert out[1].split() == ["rank", "|", "item", "|", "title", "|", "score"]
    want = Recommender.load(tiny_run, "cpu").recommend_users(["7"], 5)[0]
    assert [line.split("|")[1].strip() for line in out[3:]] == want.items


def test_recommend_for_a_history_reports_unknown_ids(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["recommend", str(tiny_run), "--history", "1,ghost,50", "--k", "3", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unknown"] == ["ghost"] and len(report["items"]) == 3
    assert {"rank", "item_id", "score"} <= set(report["items"][0])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "7", "--history", "1"], "exactly one of --user and --history"),
        ([], "exactly one of --user and --history"),
        (["--user", "ghost"], "unknown user id 'ghost'"),
        (["--history", "1", "--k", "0"], "k=0"),
    ],
)
def test_recommend_errors_exit_2(
    tiny_run: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["recommend", str(tiny_run), *argv]) == 2
    assert message in capsys.readouterr().err


def test_plot_writes_a_png(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    assert main(["plot", str(tiny_run), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_plot_writes_the_format_its_suffix_names(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    svg = tmp_path / "curves.svg"
    assert main(["plot", str(tiny_run), "--out", str(svg)]) == 0
    assert b"<svg" in svg.read_bytes()[:1000] and b"PNG" not in svg.read_bytes()[:8]
    assert main(["plot", str(tiny_run), "--out", str(tmp_path / "curves.xyz")]) == 2
    assert "cannot write xyz" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.svg"]


def test_one_item_is_singular(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(tiny_run), "--history", "50", "--k", "2"]) == 0
    assert "top 2 for a history of 1 item (" in capsys.readouterr().out


def test_plot_and_serve_reject_a_non_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
