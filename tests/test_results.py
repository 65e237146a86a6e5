"""The results document on hand-made run records: means, deviations, the paper's numbers,
the paired test against scipy, the bootstrap interval and the capped-run marks."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import wilcoxon

from hymoerec.record import decode_ranks, encode_ranks, write_json
from hymoerec.reproduce import Ablation, make_plan
from hymoerec.results import load_records, paired_test, per_user_ndcg10, render, summarise


def record(
    name: str, seed: int, ndcg10: float, ranks: list[int], dataset: str = "ml-1m", **extra: Any
) -> dict[str, Any]:
    test = {"HR@5": 0.1, "HR@10": 0.2, "NDCG@5": 0.05, "NDCG@10": ndcg10}
    return {
        "format": 1,
        "key": f"{dataset}--{name}--seed{seed}",
        "name": name,
        "model": extra.pop("model", name),
        "dataset": dataset,
        "seed": seed,
        "ablation": None,
        "valid": {**test, "NDCG@10": extra.pop("valid_ndcg10", ndcg10)},
        "test": test,
        "users": len(ranks),
        "test_rank_top10": encode_ranks(np.array(ranks)),
        "best_epoch": 3,
        "epochs_run": 5,
        "stopped": "epochs",
        "capped": False,
        "train_seconds": 60.0,
        "machine": {"device": "cpu"},
        "code": {"commit": "0123456789abcdef", "dirty": False},
        **extra,
    }


def test_ranks_round_trip_and_give_per_user_ndcg() -> None:
    ranks = np.array([1, 3, 10, 11, 500])
    assert encode_ranks(ranks) == "acj.."
    assert decode_ranks("acj..").tolist() == [1, 3, 10, 0, 0]
    ndcg = per_user_ndcg10(record("x", 1, 0.0, ranks.tolist()))
    np.testing.assert_allclose(ndcg, [1.0, 0.5, 1 / np.log2(11), 0.0, 0.0])


def test_mean_and_sample_std_over_seeds() -> None:
    runs = [record("hymoerec", s, v, [1]) for s, v in ((1, 0.1), (2, 0.2), (3, 0.3))]
    summary = summarise(runs, "NDCG@10")
    assert summary is not None
    assert summary.mean == pytest.approx(0.2) and summary.std == pytest.approx(0.1)
    assert summary.cell() == "0.2000 ± 0.1000"
    single = summarise(runs[:1], "NDCG@10")
    assert single is not None and single.std is None and single.cell() == "0.1000"
    assert summarise([], "NDCG@10") is None


def test_paired_test_matches_scipy_and_its_interval_holds_the_difference() -> None:
    rng = np.random.default_rng(1)
    users = 400
    better = [rng.integers(1, 15, users) for _ in range(3)]
    worse = [rng.integers(2, 25, users) for _ in range(3)]
    a = [record("hymoerec", s, 0.0, r.tolist()) for s, r in enumerate(better, 1)]
    b = [record("mamba4rec", s, 0.0, r.tolist()) for s, r in enumerate(worse, 1)]
    test = paired_test(a, b)
    gain = lambda r: np.where(r <= 10, 1 / np.log2(r + 1.0), 0.0)  # noqa: E731
    difference = np.mean([gain(r) for r in better], 0) - np.mean([gain(r) for r in worse], 0)
    assert test.users == users and (test.seeds_a, test.seeds_b) == (3, 3)
    assert test.mean_difference == pytest.approx(difference.mean())
    assert test.wilcoxon_p == pytest.approx(wilcoxon(difference).pvalue)
    assert test.ci_low < difference.mean() < test.ci_high
    assert test.ci_low > 0  # ranks drawn from better distributions: a clear gain
    assert test.better == (difference > 0).sum() and test.worse == (difference < 0).sum()
    same = paired_test(a, a)
    assert same.mean_difference == 0 and same.wilcoxon_p == 1.0


def test_compare_command_reports_the_paired_test_of_the_given_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hymoerec.cli import main

    compare = lambda b: main(["results", "compare", f"{tmp_path}/a.json", "--against", b])  # noqa: E731
    # hand-computed: per-user NDCG@10 of A (ranks 1, 1, 3, 11) minus B (ranks 3, 1, 1, 2)
    write_json(tmp_path / "a.json", record("hymoerec", 1, 0.0, [1, 1, 3, 11]))
    write_json(tmp_path / "b.json", record("mamba4rec", 1, 0.0, [3, 1, 1, 2]))
    difference = np.array([0.5, 0.0, -0.5, -1 / np.log2(3)])
    assert compare(f"{tmp_path}/b.json") == 0
    out = capsys.readouterr().out
    assert "A: ml-1m--hymoerec--seed1\nB: ml-1m--mamba4rec--seed1\nusers 4;" in out
    assert f"mean difference {difference.mean():+.4f}," in out
    assert f"Wilcoxon p {wilcoxon(difference[difference != 0]).pvalue:.3g};" in out
    assert "A higher for 1 users, lower for 2" in out

    write_json(tmp_path / "c.json", record("mamba4rec", 1, 0.0, [3, 1, 1, 2], "amazon-beauty"))
    (tmp_path / "d.json").write_text('{"format": 99}')
    for against, problem in (("c.json", "different datasets"), ("d.json", "not a run record")):
        assert compare(f"{tmp_path}/{against}") != 0
        assert problem in capsys.readouterr().err


def test_render_table1_paper_columns_ablations_and_capped_runs(tmp_path: Path) -> None:
    ranks = [1, 2, 30, 4]
    records = [
        record("hymoerec", 1, 0.1969, ranks),
        record("hymoerec", 2, 0.1969, [2, 2, 30, 4]),
        record("mamba4rec", 1, 0.15, [3, 2, 40, 5], capped=True, stopped="time budget of 5 min"),
        record("no-balance", 1, 0.1772, ranks, model="hymoerec", ablation="no-balance"),
        record("sasrec", 1, 0.16, ranks),
        record("sasrec-hymoe", 1, 0.176, ranks, model="sasrec", ablation="sasrec-hymoe"),
    ]
    for r in records:
        write_json(tmp_path / "results" / f"{r['key']}.json", r)
    loaded = load_records(tmp_path / "results")
    assert len(loaded) == 6
    ablations = [
        Ablation("dense-only", "no experts", "mamba4rec", ()),
        Ablation("no-balance", "lambda 0", "hymoerec", ("model_options.moe.balance_weight=0",)),
        Ablation("sasrec-hymoe", "moe ffn", "sasrec", ("model_options.ffn=hymoe",), "sasrec"),
    ]
    text = render(loaded, ablations, tmp_path / "docs" / "results.md")
    hymoerec_row = next(line for line in text.splitlines() if line.startswith("| HyMoERec |"))
    # NDCG@10 0.1969 vs the paper's 0.1790: +10.0%; HR@5 0.1 vs 0.2157: -53.6%
    assert "0.1969 ± 0.0000 | 0.1790 | +10.0%" in hymoerec_row
    assert "| 0.1000 ± 0.0000 | 0.2157 | -53.6% |" in hymoerec_row
    assert "| Mamba4Rec | 1 | 0.1000† |" in text  # capped, single seed: no deviation
    assert "`ml-1m--mamba4rec--seed1`" in text.split("## Table 1")[0]  # listed as capped
    assert "| NARM | 0 | – | 0.1727 |" in text  # the paper's baseline row, no run of ours
    assert "| SASRec | 0 | – | n/g |" in text  # not in the paper's table
    assert "| dense-only | no experts | 1 | 0.2000† | 0.1500† | -23.8% vs HyMoERec |" in text
    assert "| no-balance | lambda 0 | 1 | 0.2000 | 0.1772 | -10.0% vs HyMoERec |" in text
    # a variant on another backbone is measured against that backbone: 0.176 vs 0.16
    assert "| sasrec-hymoe | moe ffn | 1 | 0.2000 | 0.1760 | +10.0% vs SASRec |" in text
    assert "| MovieLens-1M | 4 | 2 / 1 |" in text  # the paired test ran on ML-1M
    assert "Amazon Beauty" in text  # a dataset without records still gets its table


def test_ablation_rows_pair_the_same_seeds_and_rank_both_ways(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    first, second = rng.integers(1, 30, 200), rng.integers(1, 30, 200)
    variant = first.copy()
    variant[:40] = rng.integers(1, 5, 40)  # better for some users, the rest as seed 1
    metrics = {"HR@5": 0.1, "HR@10": 0.2, "NDCG@5": 0.05}
    excluded = lambda value: {"test_history_excluded": {**metrics, "NDCG@10": value}}  # noqa: E731
    records = [
        record("hymoerec", 1, 0.10, first.tolist(), **excluded(0.20)),
        record("hymoerec", 2, 0.14, second.tolist(), **excluded(0.24)),
        record("e8-k2", 1, 0.13, variant.tolist(), model="hymoerec", **excluded(0.33)),
    ]
    ablations = [Ablation("e8-k2", "eight", "hymoerec", ("model_options.moe.num_experts=8",))]
    text = render(records, ablations, tmp_path / "results.md")
    ndcg = lambda ranks: np.where(ranks <= 10, 1 / np.log2(ranks + 1.0), 0.0)  # noqa: E731
    # against seed 1 alone, the full model's run of the variant's seed
    p = wilcoxon(ndcg(variant) - ndcg(first)).pvalue
    # 0.13 against the mean 0.12 (+8.3%); history excluded 0.33 against 0.22 (+50.0%)
    row = "| e8-k2 | eight | 1 | 0.2000 | 0.1300 | +8.3% vs HyMoERec | 0.3300 | +50.0% vs HyMoERec"
    assert f"{row} | {p:.3g} |" in text
    full = "| HyMoERec (full) | the paper's model | 2 | 0.2000 ± 0.0000 | 0.1200 ± 0.0283 |  |"
    assert f"{full} 0.2200 ± 0.0283 |  |  |" in text
    luck = wilcoxon(ndcg(second) - ndcg(first)).pvalue
    assert f"HyMoERec against itself gives Wilcoxon p {luck:.3g} (1 pair of its 2 seeds)" in text


def test_render_validation_gap_compute_and_notes(tmp_path: Path) -> None:
    records = [
        record("hymoerec", 1, 0.03, [1], "amazon-beauty", valid_ndcg10=0.04),
        record("hymoerec", 2, 0.05, [1], "amazon-beauty", valid_ndcg10=0.06),
        record("sasrec", 1, 0.02, [1], "amazon-beauty", train_seconds=7200.0),
    ]
    notes = tmp_path / "notes.md"
    notes.write_text("## Why we differ\n\nTie order, measured.\n")
    text = render(records, [], tmp_path / "results.md", None, notes)
    # mean valid 0.05, mean test 0.04: -20%
    assert "| Amazon Beauty | HyMoERec | 2 | 0.0500 | 0.0400 | -20.0% |" in text
    assert "| Amazon Beauty | SASRec | 1 | 0.0200 | 0.0200 | +0.0% |" in text
    assert "## Why we differ\n\nTie order, measured." in text
    assert "Training wall time of these 3 runs: 2.0 h on cpu." in text  # 60 + 60 + 7200 s
    assert "Why we differ" not in render(records, [], tmp_path / "results.md", None, None)
    summary = tmp_path / "results-summary.md"
    summary.write_text("## Conclusion\n\nParity holds.\n")
    opened = render(records, [], tmp_path / "results.md", None, notes, summary)
    # the conclusion comes right after the title, before the tables
    assert opened.index("## Conclusion\n\nParity holds.") < opened.index("## Table 1")
    assert opened.split("\n")[4] == "## Conclusion"


def test_plan_seeds_and_shared_ablation_runs() -> None:
    ablations = [
        Ablation("dense-only", "", "mamba4rec", ()),
        Ablation("no-warmup", "", "hymoerec", ("model_options.moe.fusion=no_warmup",)),
    ]
    plan = make_plan(["ml-1m"], ["sasrec", "mamba4rec", "hymoerec"], [1, 2, 3], [1], ablations, [1])
    keys = [run.key for run in plan]
    assert keys.count("ml-1m--mamba4rec--seed1") == 1  # dense-only is the Mamba4Rec run
    assert [k for k in keys if "sasrec" in k] == ["ml-1m--sasrec--seed1"]
    assert len([k for k in keys if "hymoerec" in k]) == 3
    assert plan[-1].key == "ml-1m--no-warmup--seed1" and plan[-1].model == "hymoerec"
    alone = make_plan(["ml-1m"], [], [1], [1], ablations, [2])
    assert [run.key for run in alone] == ["ml-1m--mamba4rec--seed2", "ml-1m--no-warmup--seed2"]
