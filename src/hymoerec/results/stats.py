"""Two models compared user by user: per-user test NDCG@10 from the records' ranks, a
Wilcoxon signed-rank test and a bootstrap interval of the mean difference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hymoerec.data.errors import DataError
from hymoerec.record import decode_ranks


def per_user_ndcg10(record: dict[str, Any]) -> np.ndarray:
    ranks = decode_ranks(record["test_rank_top10"])
    return np.where(ranks > 0, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


@dataclass(frozen=True)
class PairedTest:
    """Per-user test NDCG@10 of model A minus model B, each averaged over its seeds."""

    users: int
    seeds_a: int
    seeds_b: int
    mean_difference: float
    ci_low: float  # bootstrap percentile interval of the mean difference
    ci_high: float
    wilcoxon_p: float  # two-sided; users with no difference are dropped (Wilcoxon's rule)
    better: int  # users where A scores higher
    worse: int


def paired_test(
    a: Sequence[dict[str, Any]],
    b: Sequence[dict[str, Any]],
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedTest:
    """Compare two models user by user on the same test users.

    Seeds are averaged per user first, so every user counts once and the test is about
    users, the unit the metrics average over; the bootstrap resamples users."""
    from scipy.stats import wilcoxon

    a_users = np.mean([per_user_ndcg10(r) for r in a], axis=0)  # (U,)
    b_users = np.mean([per_user_ndcg10(r) for r in b], axis=0)  # (U,)
    if a_users.shape != b_users.shape:
        raise DataError("the compared records rank different test users")
    difference = a_users - b_users
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(difference), size=(resamples, len(difference)))
    means = difference[draws].mean(axis=1)  # (resamples,)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    p = 1.0 if not difference.any() else float(wilcoxon(difference).pvalue)
    return PairedTest(
        users=len(difference),
        seeds_a=len(a),
        seeds_b=len(b),
        mean_difference=float(difference.mean()),
        ci_low=float(low),
        ci_high=float(high),
        wilcoxon_p=p,
        better=int((difference > 0).sum()),
        worse=int((difference < 0).sum()),
    )
