"""Routing tables of a tiny HyMoERec trained on ML-100K: shares are distributions, the
entropies are bounded by log E, every figure is written."""

import csv
import itertools
import math
from pathlib import Path

import pytest

from hymoerec.analysis import analyze_run, describe
from hymoerec.cli import main


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_analyze_writes_tables_whose_shares_are_distributions(
    tiny_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "analysis"
    written = {p.name for p in analyze_run(tiny_run, out)}
    assert written >= {
        "share_by_popularity.csv",
        "share_by_history_length.csv",
        "entropy.csv",
        "training.csv",
        "summary.json",
        "share_by_popularity.png",
        "share_by_history_length.png",
        "training_and_entropy.png",
    }
    experts = [f"expert_{e}" for e in range(4)]  # the default E = 4
    popularity = rows(out / "share_by_popularity.csv")
    assert list(popularity[0]) == ["layer", "decile", "users", "min_count", "max_count", *experts]
    assert [int(r["decile"]) for r in popularity] == list(range(1, 11))
    assert sum(int(r["users"]) for r in popularity) == 943  # every ML-100K user, once
    counts = [(int(r["min_count"]), int(r["max_count"])) for r in popularity]
    assert all(lo <= hi for lo, hi in counts)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(counts))  # sorted
    lengths = rows(out / "share_by_history_length.csv")
    assert sum(int(r["users"]) for r in lengths) == 943
    for row in [*popularity, *lengths]:
        shares = [float(row[e]) for e in experts]
        assert min(shares) >= 0 and sum(shares) == pytest.approx(1.0)
    (entropy,) = rows(out / "entropy.csv")  # one Mamba layer, one MoE
    assert float(entropy["max_entropy"]) == pytest.approx(math.log(4))
    assert 0 <= float(entropy["usage_entropy"]) <= math.log(4) + 1e-9
    assert 0 <= float(entropy["mean_token_entropy"]) <= math.log(4) + 1e-9
    training = rows(out / "training.csv")
    assert [int(r["epoch"]) for r in training] == [1, 2]
    # balance term = sum_e gbar log gbar, between -log E (uniform) and 0
    assert all(-math.log(4) - 1e-6 <= float(r["balance_term"]) <= 0 for r in training)
    assert 0 < float(training[0]["alpha_layer0"]) < float(training[1]["alpha_layer0"]) < 1
    reading = describe(out)
    assert len(reading) == 4 and "popularity" in reading[0] and "chance" in reading[0]
    alpha = [float(r["alpha_layer0"]) for r in training]
    assert f"peaks at {max(alpha):.3f}" in reading[3] and f"ends at {alpha[-1]:.3f}" in reading[3]


def test_analyze_cli_reports_a_missing_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
