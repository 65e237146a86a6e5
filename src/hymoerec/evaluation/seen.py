"""A learned penalty on items the user has already interacted with.

Under the ranking that keeps the history (RecBole's sequential protocol), a model whose
users rarely come back to an item wastes top-k slots on what they have already seen.
The penalty is one number ``p >= 0`` subtracted from the score of every item of the
user's history, the target included when it is there: the scores become
``s_i - p * seen_i``. It uses nothing but the history, so it is a legal part of the
model under either ranking.

``p`` is fitted after training by maximum likelihood on the validation targets, with
the trained model fixed. For one user, with ``LU`` and ``LS`` the log-sum-exp of the
scores of the unseen and the seen items,

    NLL(p) = p * seen_y - s_y + log(exp(LU) + exp(LS - p)),

a convex function of p whose derivative ``seen_y - q(p)`` (``q`` the softmax mass left
on seen items) rises with p towards ``seen_y``. So the mean over users needs only four
numbers per user and a bisection on the derivative. Where users do come back to items,
p stops where the returns are best explained. Where no validation target was ever seen
before (as in MovieLens, whose users rate a film once, and in the 5-core Amazon Beauty)
the likelihood rises without end and p is infinite: seen items rank below every unseen
item, which makes the ranking that keeps the history equal to the one that leaves it
out, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hymoerec.data.batches import right_padded
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData

_BISECTION_STEPS = 60


@dataclass(frozen=True)
class SeenFit:
    penalty: float  # the fitted p; inf where no validation target was a seen item
    nll_before: float  # mean validation NLL at p = 0
    nll_after: float  # mean validation NLL at the fitted p
    target_seen: float  # share of validation targets already in their user's history
    seen_mass: float  # mean softmax probability on seen items at p = 0


def seen_mask(history: Tensor, num_columns: int) -> Tensor:
    """(B, num_columns) bool, True at the items of each PAD-padded history row."""
    mask = torch.zeros(history.size(0), num_columns, dtype=torch.bool, device=history.device)
    mask.scatter_(1, history, True)
    mask[:, PAD] = False
    return mask  # (B, num_columns)


@torch.no_grad()
def user_terms(
    scorer: Callable[[Tensor, Tensor], Tensor],
    data: SequenceData,
    split: str,
    max_len: int,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per user of ``split``: (s_y, seen_y, LU, LS) as the module docstring names them."""
    part = data.split(split)
    assert part.targets is not None
    columns = []
    for start in range(0, data.num_users, batch_size):
        users = np.arange(start, min(start + batch_size, data.num_users))
        starts, ends = part.starts[users], part.ends[users]
        windows, lengths = right_padded(part.items, starts, ends, max_len)
        scores = scorer(torch.from_numpy(windows), torch.from_numpy(lengths)).float()
        scores[:, PAD] = -torch.inf  # (B, N + 1)
        full, _ = right_padded(part.items, starts, ends, int((ends - starts).max()))
        seen = seen_mask(torch.from_numpy(full), scores.size(1))
        targets = torch.from_numpy(part.targets[users])[:, None]
        columns.append(
            torch.stack(
                [
                    scores.gather(1, targets).squeeze(1),
                    seen.gather(1, targets).squeeze(1).float(),
                    scores.masked_fill(seen, -torch.inf).logsumexp(1),
                    scores.masked_fill(~seen, -torch.inf).logsumexp(1),
                ],
                dim=1,
            ).double()
        )
    terms = torch.cat(columns).numpy()
    return terms[:, 0], terms[:, 1], terms[:, 2], terms[:, 3]


def penalise(scores: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """``scores`` with ``penalty`` subtracted where ``seen`` is True (inf: set to -inf)."""
    if math.isinf(penalty):
        return scores.masked_fill(seen, -torch.inf)
    return scores - penalty * seen.to(scores.dtype)


def _nll(p: float, s_y: np.ndarray, seen_y: np.ndarray, lu: np.ndarray, ls: np.ndarray) -> float:
    if math.isinf(p):  # only reached when no target is seen: the seen items drop out
        return float(np.mean(-s_y + lu))
    return float(np.mean(p * seen_y - s_y + np.logaddexp(lu, ls - p)))


def _slope(p: float, seen_y: np.ndarray, lu: np.ndarray, ls: np.ndarray) -> float:
    # q(p) = exp(LS - p) / (exp(LU) + exp(LS - p)) = sigmoid(LS - p - LU)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.nan_to_num(1.0 / (1.0 + np.exp(lu - ls + p)), nan=0.0)
    return float(np.mean(seen_y - q))


def fit_penalty(s_y: np.ndarray, seen_y: np.ndarray, lu: np.ndarray, ls: np.ndarray) -> SeenFit:
    """The p >= 0 minimising the mean NLL of the given per-user terms (may be inf)."""
    if _slope(0.0, seen_y, lu, ls) >= 0:
        penalty = 0.0  # seen items are already no likelier than the targets show
    elif not np.any(seen_y):
        penalty = math.inf  # the slope tends to mean(seen_y) = 0 from below: no minimum
    else:
        low, high = 0.0, 1.0
        while _slope(high, seen_y, lu, ls) < 0:  # ends: the slope tends to mean(seen_y) > 0
            low, high = high, 2 * high
        for _ in range(_BISECTION_STEPS):
            middle = (low + high) / 2
            if _slope(middle, seen_y, lu, ls) < 0:
                low = middle
            else:
                high = middle
        penalty = (low + high) / 2
    with np.errstate(over="ignore"):
        mass = float(np.mean(np.nan_to_num(1.0 / (1.0 + np.exp(lu - ls)), nan=0.0)))
    return SeenFit(
        penalty=penalty,
        nll_before=_nll(0.0, s_y, seen_y, lu, ls),
        nll_after=_nll(penalty, s_y, seen_y, lu, ls),
        target_seen=float(np.mean(seen_y)),
        seen_mass=mass,
    )


def fit_seen_penalty(
    scorer: Callable[[Tensor, Tensor], Tensor],
    data: SequenceData,
    max_len: int,
    split: str = "valid",
    batch_size: int = 256,
) -> SeenFit:
    """Fit the penalty of a trained scorer on ``split``'s targets (validation by default)."""
    return fit_penalty(*user_terms(scorer, data, split, max_len, batch_size))
