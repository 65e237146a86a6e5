"""User by user: per-user test NDCG@10 (history kept) of two implementations, each averaged
over its seeds, with the Wilcoxon signed-rank test (scipy).

    python benchmarks/parity/compare.py ml-100k--sasrec--recbole ml-100k--sasrec--ours-converged
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

RESULTS = Path(__file__).resolve().parents[2] / "results" / "parity"


def per_user_ndcg10(prefix: str) -> tuple[np.ndarray, int]:
    """Per-user test NDCG@10 averaged over the seeds of ``prefix`` (DATASET--MODEL--TAG)."""
    files = sorted(RESULTS.glob(f"{prefix}--seed*.ranks.npy"))
    if not files:
        raise SystemExit(f"no ranks for {prefix} in {RESULTS}")
    ranks = [np.load(f) for f in files]
    gains = [np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0) for r in ranks]
    return np.mean(gains, axis=0), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    a, seeds_a = per_user_ndcg10(args.first)
    b, seeds_b = per_user_ndcg10(args.second)
    difference = a - b
    p = wilcoxon(a, b).pvalue
    print(
        f"{args.first} ({seeds_a} seeds) - {args.second} ({seeds_b} seeds): "
        f"NDCG@10 {a.mean():.4f} - {b.mean():.4f} = {difference.mean():+.4f} "
        f"({difference.mean() / b.mean():+.1%}), {len(a)} users, Wilcoxon p {p:.3g}"
    )


if __name__ == "__main__":
    main()
