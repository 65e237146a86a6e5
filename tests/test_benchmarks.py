"""The time-to-quality reader of benchmarks/train_speed.py, on records and run directories."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
assert spec is not None and spec.loader is not None
train_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_speed)


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
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tie_order.py"
    env = {**os.environ, "HYMOEREC_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    shares = json.loads(result.stdout)
    assert shares["dataset"] == "ml-100k" and shares["interactions"] == 99_287
    assert 0 < shares["neighbours_tied"] < 1
