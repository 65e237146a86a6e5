"""What both sides of the parity harness share: the hyperparameters, the scoring of a
trained model with our evaluator (both rankings and the history share of the top 10),
and the records they write.

Imports only hymoerec, numpy and torch, so it runs in the project's environment and in
the RecBole one alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hymoerec.data.batches import right_padded
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.evaluator import Scorer, evaluate
from hymoerec.models import config_class

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "parity"
METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@10")
TOP = 10  # the top-k whose history share is reported

# Per dataset: our training options (configs/DATASET-MODEL.yaml where one exists; ML-100K
# has none and takes the Beauty recipe) and the history length.
TRAIN: dict[str, dict[str, Any]] = {
    "ml-100k": {"batch_size": 128, "lr": 0.001, "max_len": 50, "patience": 10},
    "amazon-beauty": {"batch_size": 128, "lr": 0.001, "max_len": 50, "patience": 10},
}
# Model options that differ from the model's defaults, per dataset (configs/*.yaml).
MODEL_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("amazon-beauty", "sasrec"): {"dropout": 0.4},
}
RECBOLE_MODELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "narm": "NARM", "bert4rec": "BERT4Rec"}
RECBOLE_BATCH = 2048  # RecBole's default train_batch_size (prefixes per step), as Mamba4Rec


def model_options(dataset: str, model: str) -> dict[str, Any]:
    options = dataclasses.asdict(config_class(model)())
    options.pop("moe", None)
    options.pop("ffn", None)
    options.update(MODEL_OPTIONS.get((dataset, model), {}))
    if "max_len" in options:
        options["max_len"] = TRAIN[dataset]["max_len"]
    return options


def recbole_options(dataset: str, model: str) -> dict[str, Any]:
    """The same model in RecBole's option names (RecBole 1.2.1 model yaml keys)."""
    ours = model_options(dataset, model)
    if model in ("sasrec", "bert4rec"):
        options = {
            "n_layers": ours["num_layers"],
            "n_heads": ours["num_heads"],
            "hidden_size": ours["hidden_size"],
            "inner_size": ours["inner_size"],
            "hidden_dropout_prob": ours["dropout"],
            "attn_dropout_prob": ours["attn_dropout"],
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
            "initializer_range": 0.02,
        }
        if model == "bert4rec":
            options["mask_ratio"] = ours["mask_prob"]
        return options
    if model == "gru4rec":
        return {
            "embedding_size": ours["embedding_size"],
            "hidden_size": ours["hidden_size"],
            "num_layers": ours["num_layers"],
            "dropout_prob": ours["dropout"],
        }
    if model == "narm":
        return {
            "embedding_size": ours["embedding_size"],
            "hidden_size": ours["hidden_size"],
            "n_layers": ours["num_layers"],
            "dropout_probs": list(ours["dropout"]),
        }
    raise ValueError(f"no RecBole counterpart for model {model!r}")


@torch.no_grad()
def history_share(
    scorer: Scorer, data: SequenceData, split: str, max_len: int, batch_size: int = 256
) -> float:
    """Mean number of the top-``TOP`` slots (history kept in the ranking) that hold items
    of the user's own history."""
    part = data.split(split)
    taken = np.zeros(data.num_users)
    for start in range(0, data.num_users, batch_size):
        users = np.arange(start, min(start + batch_size, data.num_users))
        windows, lengths = right_padded(part.items, part.starts[users], part.ends[users], max_len)
        scores = scorer(torch.from_numpy(windows), torch.from_numpy(lengths)).float()
        scores[:, PAD] = -torch.inf
        top = scores.topk(TOP, dim=1).indices  # (B, TOP)
        longest = int((part.ends[users] - part.starts[users]).max())
        full, _ = right_padded(part.items, part.starts[users], part.ends[users], longest)
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen.scatter_(1, torch.from_numpy(full), True)
        seen[:, PAD] = False
        taken[users] = seen.gather(1, top).sum(dim=1).numpy()
    return float(taken.mean())


def score(scorer: Scorer, data: SequenceData, max_len: int) -> dict[str, Any]:
    """Test (and validation) metrics of ``scorer`` under both rankings, by our evaluator."""
    report: dict[str, Any] = {}
    for split in ("valid", "test"):
        for name, exclude in (("kept", False), ("excluded", True)):
            result = evaluate(scorer, data, split, max_len, exclude_history=exclude)
            report[f"{split}_{name}"] = result.summary(METRICS)
            if split == "test" and not exclude:
                report["test_ranks_kept"] = result.ranks
    report["test_history_top10"] = history_share(scorer, data, "test", max_len)
    return report


def code_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_record(record: dict[str, Any], name: str) -> Path:
    """``results/parity/NAME.json``, written atomically; per-user ranks beside it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    ranks = record.pop("test_ranks_kept", None)
    if ranks is not None:
        np.save(RESULTS / f"{name}.ranks.npy", np.asarray(ranks, dtype=np.int32))
    record = {
        **record,
        "code_commit": code_commit(),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both sides take: what to train, with which seed, for how long."""
    parser.add_argument("--dataset", required=True, choices=sorted(TRAIN))
    parser.add_argument("--model", required=True, choices=sorted(RECBOLE_MODELS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, required=True)


def finish(record: dict[str, Any], name: str, prefix: str = "") -> Path:
    """Write the record and print its one-line summary (``prefix`` first, if any)."""
    kept, excluded = record["test_kept"], record["test_excluded"]
    share, seconds = record["test_history_top10"], record["wall_seconds"]
    path = write_record(record, name)
    print(
        f"{path}: {prefix}test NDCG@10 kept {kept['NDCG@10']:.4f} excluded "
        f"{excluded['NDCG@10']:.4f}, history in top 10 {share:.2f}, {seconds:.0f} s"
    )
    return path


def command(script: str, args: Any, *extra: str) -> str:
    """The command line that reproduces a run of ``script`` (run from the checkout)."""
    words = [script, "--dataset", args.dataset, "--model", args.model]
    words += ["--seed", str(args.seed), "--epochs", str(args.epochs), *extra]
    return " ".join([*words, "--data-dir", "../shared/data"])


def record_name(dataset: str, model: str, implementation: str, seed: int) -> str:
    return f"{dataset}--{model}--{implementation}--seed{seed}"


def padded_to(histories: Tensor, width: int) -> Tensor:
    """(B, L) right-padded histories widened to (B, width) with padding."""
    out = histories.new_full((histories.size(0), width), PAD)
    out[:, : histories.size(1)] = histories
    return out
