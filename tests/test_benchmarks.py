"""The time-to-quality reader of benchmarks/train_speed.py, on records and run directories;
epoch_against.py's ratios, its copy of a revision and its report of a failed run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_speed = script("train_speed")
epoch_against = script("epoch_against")


def record(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "ml-1m--hymoerec--seed1.json"
    base = {"model": "hymoerec", "train_seconds": 300.0, "epochs_run": 3}
    path.write_text(json.dumps(base | fields))
    return path


def test_record_with_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = record(
        tmp_path,
        valid_ndcg10_by_epoch=[0.05, 0.11, 0.09],
        elapsed_by_epoch=[90.0, 200.4, 310.0],
        valid_history_excluded_ndcg10_by_epoch=[0.08, 0.16, 0.15],
    )
    train_speed.time_to_quality([path], (0.10, 0.15))
    row = capsys.readouterr().out.splitlines()[1].split("|")
    assert [c.strip() for c in row[2:5]] == ["200 (2)", "never", "0.1100 (2)"]
    train_speed.time_to_quality([path], (0.10, 0.15), "valid_history_excluded")
    out = capsys.readouterr().out
    assert [c.strip() for c in out.splitlines()[1].split("|")[2:4]] == ["200 (2)", "200 (2)"]
    assert "estimated" not in out


def test_record_without_times_is_estimated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = record(tmp_path, valid_ndcg10_by_epoch=[0.05, 0.09, 0.12])
    train_speed.time_to_quality([path], (0.10,))
    out = capsys.readouterr().out
    assert out.splitlines()[1].split("|")[2].strip() == "~300 (3)"  # 3 x 300 s / 3 epochs
    assert "estimated" in out
    train_speed.time_to_quality([path], (0.10,), "valid_history_excluded")
    assert "no valid_history_excluded NDCG@10 per epoch" in capsys.readouterr().out


def test_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: sasrec\n")
    lines = [
        {"epoch": 1, "elapsed": 50.0, "valid": {"NDCG@10": 0.12}},
        {"epoch": 2, "elapsed": 99.0, "valid": {"NDCG@10": 0.16}},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    train_speed.time_to_quality([run], (0.10, 0.15))
    row = capsys.readouterr().out.splitlines()[1].split("|")
    assert [c.strip() for c in row[1:5]] == ["sasrec", "50 (1)", "99 (2)", "0.1600 (2)"]


def test_tie_order_runs_as_the_readme_writes_it(shared_data: Path) -> None:
    import os
    import sys

    tie_order = BENCHMARKS / "tie_order.py"
    env = {**os.environ, "HYMOEREC_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(tie_order)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    shares = json.loads(result.stdout)
    assert shares["dataset"] == "ml-100k" and shares["interactions"] == 99_287
    assert 0 < shares["neighbours_tied"] < 1


def test_epoch_against_ratios_per_round_and_their_median() -> None:
    names = ["old float32", "now float32", "now bf16"]
    seconds = {"old float32": [60.0, 66.0, 63.0], "now float32": [30.0, 22.0, 21.0]}
    seconds["now bf16"] = [15.0, 20.0, 14.0]
    assert epoch_against.ratios_line(seconds, names, 1) == (
        "old float32 / now float32 3.00x, old float32 / now bf16 3.30x, "
        "now float32 / now bf16 1.10x"
    )
    # medians of (2, 3, 3), (4, 3.3, 4.5) and (2, 1.1, 1.5)
    assert epoch_against.ratios_line(seconds, names, None) == (
        "old float32 / now float32 3.00x, old float32 / now bf16 4.00x, "
        "now float32 / now bf16 1.50x"
    )


def test_epoch_against_copies_a_revision(tmp_path: Path) -> None:
    root = epoch_against.extract("HEAD", tmp_path / "head")
    assert (root / "src" / "hymoerec" / "__init__.py").is_file()
    assert (root / "configs" / "ml-1m-hymoerec.yaml").is_file()
    assert not (root / "tests").exists()  # src and configs only
    with pytest.raises(subprocess.CalledProcessError):
        epoch_against.extract("no-such-revision", tmp_path / "none")


def test_epoch_against_reports_a_failed_run(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RuntimeError, match=r"failed:\n(.|\n)*No such file or directory"):
        epoch_against.train(root, tmp_path / "cache", ["--config", str(missing)], tmp_path / "o")
    assert not (tmp_path / "o").exists()
