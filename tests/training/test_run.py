"""End-to-end runs on the real ML-100K with tiny configs."""

import json
from pathlib import Path

import pytest
import torch

from hymoerec.cli import main
from hymoerec.config import ConfigError, load_run_config
from hymoerec.training.loss import chunked_softmax_ce, full_softmax_ce
from hymoerec.training.run import evaluate_run, train
from tests.conftest import TINY


def tiny_config(shared_data: Path, cache: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_run_config(
        None,
        [*TINY, *extra, f"data.data_dir={shared_data}", f"data.cache_dir={cache}"],
        {"model": "hymoerec", "dataset": "ml-100k"},
    )


def test_same_seed_same_metrics_and_run_dir_contents(
    shared_data: Path, tmp_path: Path, cache_root: Path
) -> None:
    config = tiny_config(shared_data, cache_root)
    first = train(config, tmp_path / "a", progress=False)
    second = train(config, tmp_path / "b", progress=False)
    assert first["valid"] == second["valid"] and first["test"] == second["test"]
    run = tmp_path / "a"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "model.safetensors",
        "final.json",
        "router.json",
        "tensorboard",
    }
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert len(epochs[0]["expert_share"]) == 1 and len(epochs[0]["expert_share"][0]) == 4
    # alpha follows the warm-up: sigmoid(a) * min(1, t / 500) after a few steps is small
    assert 0 < epochs[0]["alpha"][0] < epochs[1]["alpha"][0] < 0.5
    # re-scoring the saved run reproduces the final metrics
    report = evaluate_run(run)
    assert report["test"] == pytest.approx(first["test"])
    assert report["valid"] == pytest.approx(first["valid"])


def test_training_beats_popularity(shared_data: Path, tmp_path: Path, cache_root: Path) -> None:
    config = tiny_config(
        shared_data,
        cache_root,
        "model=sasrec",
        "train.epochs=6",
        "train.lr=0.005",
        "model_options={hidden_size: 32}",
    )
    final = train(config, tmp_path / "run", progress=False)
    # most-popular on ML-100K test scores HR@10 ~ 0.06; a trained model must clear it
    assert final["test"]["HR@10"] > 0.08


def test_failed_run_leaves_nothing(shared_data: Path, tmp_path: Path, cache_root: Path) -> None:
    config = tiny_config(shared_data, cache_root, "model_options.moe.top_k=9")
    with pytest.raises(ValueError, match="top_k"):
        train(config, tmp_path / "run", progress=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        train(tiny_config(shared_data, cache_root), tmp_path / "exists", progress=False)


def test_cli_train_then_evaluate(
    shared_data: Path, tmp_path: Path, cache_root: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    args = [
        "train",
        "--model",
        "gru4rec",
        "--dataset",
        "ml-100k",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
        "--set",
        f"data.data_dir={shared_data}",
        "--set",
        f"data.cache_dir={cache_root}",
        "--set",
        "train.epochs=1",
        "--set",
        "train.max_len=20",
        "--set",
        "train.valid_history_excluded=true",
    ]
    assert main(args) == 0
    assert "test" in capsys.readouterr().out
    (epoch,) = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").open()]
    for metric in ("HR@10", "NDCG@10"):  # the same weights, fewer competing items
        assert epoch["valid_history_excluded"][metric] >= epoch["valid"][metric]
    assert main(["evaluate", str(tmp_path / "r"), "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    # the reference models' shape: what was scored, how, and the metrics under "metrics"
    assert set(ranked) == {"model", "dataset", "run", "protocol", "metrics", "seconds"}
    assert (ranked["model"], ranked["dataset"]) == ("gru4rec", "ml-100k")
    assert ranked["protocol"] == "full ranking, history items ranked"
    report = ranked["metrics"]
    assert 0 <= report["test"]["NDCG@10"] <= report["test"]["HR@10"] <= 1
    assert main(["evaluate", str(tmp_path / "r"), "--json", "--exclude-history"]) == 0
    excluded_report = json.loads(capsys.readouterr().out)
    assert excluded_report["protocol"] == "full ranking, history items excluded"
    excluded = excluded_report["metrics"]
    # one epoch: the best weights are the last, ranked the same way during training
    assert excluded["valid"] == pytest.approx(epoch["valid_history_excluded"])
    # taking other items out of the ranking can only lift the target
    for split in ("valid", "test"):
        for metric in ("HR@10", "NDCG@10", "MRR@10"):
            assert excluded[split][metric] >= report[split][metric]
    # ...and on ML-100K, where nobody rates a film twice, seen films fill the top 10 often
    assert excluded["test"]["HR@10"] > report["test"]["HR@10"]
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--model",
                "nope",
                "--dataset",
                "ml-100k",
                "--out",
                str(tmp_path / "x"),
                "--data-dir",
                str(shared_data),
            ]
        )
        == 2
    )
    assert "unknown model" in capsys.readouterr().err


def test_chunked_ce_equals_full_ce() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(37, 8, requires_grad=True)
    weights = torch.randn(11, 8, requires_grad=True)
    targets = torch.randint(1, 11, (37,))
    full = full_softmax_ce(hidden, weights, targets)
    full.backward()
    expected = hidden.grad.clone(), weights.grad.clone()  # type: ignore[union-attr]
    hidden.grad = weights.grad = None
    chunked = chunked_softmax_ce(hidden, weights, targets, chunk=5)
    (2 * chunked).backward()  # the upstream gradient scales the stored gradients
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(hidden.grad, 2 * expected[0])
    torch.testing.assert_close(weights.grad, 2 * expected[1])
    assert weights.grad[0].abs().max() == 0  # padding row never gets probability


def test_seen_penalty_is_fitted_recorded_and_reapplied(
    shared_data: Path, tmp_path: Path, cache_root: Path
) -> None:
    config = tiny_config(shared_data, cache_root, "train.seen_penalty=true")
    final = train(config, tmp_path / "run", progress=False)
    fitted = final["seen_penalty"]
    # MovieLens users rate a film once: the likelihood asks for an infinite penalty
    assert fitted["target_seen"] == 0.0 and fitted["penalty"] == "inf"
    assert fitted["nll_after"] < fitted["nll_before"]
    assert "seen items penalised" in final["protocol"]
    # re-scoring the run applies the recorded penalty
    run = tmp_path / "run"
    assert evaluate_run(run)["test"] == pytest.approx(final["test"])
    # the same weights without it: what training selected on, and a lower kept ranking
    plain = evaluate_run(run, seen_penalty=0.0)
    assert plain["valid"] == pytest.approx(final["valid_without_penalty"])
    assert plain["test"]["NDCG@10"] < final["test"]["NDCG@10"]
    # no target is a seen item, so the penalty gives the ranking without the history
    assert evaluate_run(run, exclude_history=True, seen_penalty=0.0)["test"] == final["test"]
