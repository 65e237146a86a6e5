"""Ranks of targets among all items, and the top-K metrics computed from them.

Ties: by default a target's rank is 1 + #(items scoring strictly higher) + #(other items
tying with it), the pessimistic rank, so ties always count against the model. The
``ties="expected"`` option instead averages each metric over a uniformly random order of
the tied items (a model scoring every item alike then gets HR@K = K/N exactly); it is never
below the pessimistic value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

TIE_MODES = ("pessimistic", "expected")


def target_ranks(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(#items scoring strictly higher, #other items tying) for each target.

    scores: (B, N) with excluded items (padding) already at -inf; targets: (B,).
    The pessimistic 1-based rank is 1 + higher + ties.
    """
    target_score = scores.gather(1, targets[:, None])  # (B, 1)
    higher = (scores > target_score).sum(dim=1)
    ties = (scores == target_score).sum(dim=1) - 1  # minus the target itself
    return higher, ties


def hit_gain(ranks: np.ndarray) -> np.ndarray:
    return np.ones_like(ranks, dtype=np.float64)


def ndcg_gain(ranks: np.ndarray) -> np.ndarray:
    # One relevant item, so IDCG = 1 and NDCG = 1 / log2(rank + 1) inside the top K.
    return 1.0 / np.log2(ranks + 1.0)


def mrr_gain(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / ranks


GAINS = {"HR": hit_gain, "NDCG": ndcg_gain, "MRR": mrr_gain}
DEFAULT_METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@10")


def parse_metric(name: str) -> tuple[str, int]:
    kind, _, k = name.partition("@")
    if kind not in GAINS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"bad metric {name!r}; expected e.g. HR@10, NDCG@5, MRR@10")
    return kind, int(k)


@dataclass(frozen=True)
class RankingResult:
    """Per-user ranking outcome of one split; every metric derives from it."""

    users: np.ndarray  # (U,) internal user ids
    higher: np.ndarray  # (U,) items scoring strictly above the target
    ties: np.ndarray  # (U,) other items scoring exactly as the target

    @property
    def ranks(self) -> np.ndarray:
        """Pessimistic 1-based ranks."""
        return 1 + self.higher + self.ties

    def per_user(self, metric: str, ties: str = "pessimistic") -> np.ndarray:
        kind, k = parse_metric(metric)
        gain = GAINS[kind]
        if ties == "pessimistic":
            ranks = self.ranks
            return np.where(ranks <= k, gain(ranks), 0.0)
        if ties != "expected":
            raise ValueError(f"ties={ties!r}; expected one of {', '.join(TIE_MODES)}")
        # The target is equally likely at every rank in [higher + 1, higher + ties + 1].
        positions = np.arange(1, k + 1)  # (K,)
        inside = (positions >= self.higher[:, None] + 1) & (
            positions <= (self.higher + self.ties)[:, None] + 1
        )  # (U, K)
        return (inside * gain(positions)).sum(axis=1) / (self.ties + 1)

    def summary(
        self, metrics: Sequence[str] = DEFAULT_METRICS, ties: str = "pessimistic"
    ) -> dict[str, float]:
        return {m: float(self.per_user(m, ties).mean()) for m in metrics}

    @staticmethod
    def from_tensors(users: np.ndarray, higher: Tensor, ties: Tensor) -> RankingResult:
        return RankingResult(
            users=users,
            higher=higher.to(torch.int64).cpu().numpy(),
            ties=ties.to(torch.int64).cpu().numpy(),
        )
