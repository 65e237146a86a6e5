"""How much of a dataset's order is decided by ties of equal timestamps, and what the tie
order does to the metrics of finished runs.

    python benchmarks/tie_order.py                      # ml-100k in $HYMOEREC_DATA or ./data
    python benchmarks/tie_order.py --dataset ml-100k --data-dir ../shared/data
    python benchmarks/tie_order.py --runs runs/ties/ml-100k-hymoerec-item \\
        runs/ties/ml-100k-hymoerec-file

The first form reads the raw log, applies the protocol's k-core filter and the
chronological sort, and prints the share of a user's neighbouring interactions that share
a timestamp, the share whose item id rises (one half when ties are in no particular
order), and the share of validation and test targets whose timestamp equals the one
before them (their place in the sequence is decided by the tie order, not by time). The
second prints, per run directory, its ``data.ties`` and its best validation and test
metrics, so runs that differ only in the tie order can be put side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml


def tie_shares(dataset: str, data_dir: str | None) -> dict[str, object]:
    from hymoerec.data.protocol import encode, k_core
    from hymoerec.data.registry import resolve

    log = resolve(dataset, data_dir).read()
    _, users = encode(log.user_ids)
    _, items = encode(log.item_ids)
    keep = k_core(users, items, 5, 5)
    users, items, timestamp = users[keep], items[keep], log.timestamp[keep]
    order = np.argsort(timestamp, kind="stable")
    order = order[np.argsort(users[order], kind="stable")]
    users, items, timestamp = users[order], items[order], timestamp[order]
    same_user = users[1:] == users[:-1]
    # about one half when ties are in no particular order; near 1 when sorted by item id
    rising = float((same_user & (items[1:] > items[:-1])).sum() / same_user.sum())
    if np.array_equal(log.timestamp, np.arange(len(log.timestamp))):  # an order, no times
        return {"interactions": len(users), "timestamps": False, "neighbours_rising_id": rising}
    tied = same_user & (timestamp[1:] == timestamp[:-1])  # tied[i]: row i + 1 ties row i
    last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])  # each user's test target
    return {
        "interactions": len(users),
        "timestamps": True,
        "neighbours_rising_id": rising,
        "neighbours_tied": float(tied.sum() / same_user.sum()),
        "valid_targets_tied_with_previous": float(tied[last - 2].mean()),
        "test_targets_tied_with_previous": float(tied[last - 1].mean()),
    }


def run_row(directory: Path) -> dict[str, object]:
    config = yaml.safe_load((directory / "config.yaml").read_text())
    final = json.loads((directory / "final.json").read_text())
    return {
        "run": str(directory),
        "dataset": config["dataset"],
        "ties": config.get("data", {}).get("ties", "file"),
        "best epoch": final["best_epoch"],
        "valid NDCG@10": round(final["valid"]["NDCG@10"], 4),
        "test HR@10": round(final["test"]["HR@10"], 4),
        "test NDCG@10": round(final["test"]["NDCG@10"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        help="a named dataset or a file with timestamps (default ml-100k, unless --runs)",
    )
    parser.add_argument("--data-dir", help="directory of the named datasets")
    parser.add_argument("--runs", nargs="*", default=[], help="finished run directories")
    args = parser.parse_args()
    if not args.dataset and not args.runs:
        args.dataset = "ml-100k"
    if args.dataset:
        print(json.dumps({"dataset": args.dataset, **tie_shares(args.dataset, args.data_dir)}))
    for run in args.runs:
        print(json.dumps(run_row(Path(run))))


if __name__ == "__main__":
    main()
