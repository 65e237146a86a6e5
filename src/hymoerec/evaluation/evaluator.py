"""Batched full-ranking evaluation of any scorer on a leave-one-out split.

A scorer returns a (B, N + 1) score matrix. On a catalogue of millions of items that
matrix is the memory peak, so a ``FactorScorer`` (scores = user vectors x item table, which
every model here is) may instead be ranked chunk by chunk over the items: the target's
score first, then the items scoring above it or tied with it, counted one chunk at a time.
The ranks are the same; peak memory is (B x chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from hymoerec.data.batches import right_padded
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.metrics import RankingResult, target_ranks
from hymoerec.evaluation.seen import penalise, seen_mask

# (histories (B, L) right-padded, lengths (B,)) -> scores (B, N + 1) for items 0..N
Scorer = Callable[[Tensor, Tensor], Tensor]


def dot_scores(hidden: Tensor, weights: Tensor) -> Tensor:
    """hidden (B, D) @ weights (C, D).T in float32, under an autocast or not. A bf16
    autocast would round the scores to 8 bits of mantissa, which ties and reorders items
    that float32 tells apart: that alone took ~3% off the history-kept NDCG@10 of bf16
    runs (docs/training.md, "bfloat16"). The product is a small part of a ranking."""
    with torch.autocast(hidden.device.type, enabled=False):
        return hidden.float() @ weights.float().T


@dataclass(frozen=True)
class FactorScorer:
    """A scorer whose scores are dot products of a user vector with the item table."""

    hidden: Callable[[Tensor, Tensor], Tensor]  # (histories, lengths) -> (B, D)
    weights: Tensor  # (N + 1, D); row 0 is padding

    def __call__(self, histories: Tensor, lengths: Tensor) -> Tensor:
        return dot_scores(self.hidden(histories, lengths), self.weights)  # (B, N + 1)


def evaluate(
    scorer: Scorer,
    data: SequenceData,
    split: str,
    max_len: int,
    batch_size: int = 1024,
    exclude_history: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = False,
    item_chunk: int = 0,
    seen_penalty: float = 0.0,
) -> RankingResult:
    """Rank every item for every user of ``split`` ('valid' or 'test').

    The scorer sees each history cut to its last ``max_len`` items. Padding is never
    ranked. With ``exclude_history`` every item of the user's full history (except the
    target itself) is removed from the ranking; the paper's protocol keeps them. With
    ``item_chunk`` > 0 and a ``FactorScorer`` over more items than that, items are ranked
    ``item_chunk`` at a time (same ranks, bounded memory). ``seen_penalty`` p is the learned
    penalty of ``hymoerec.evaluation.seen``: every item of the user's full history, the
    target included when it is there, is ranked by its score minus p (inf: last).
    """
    (result,) = evaluate_rankings(
        scorer,
        data,
        split,
        max_len,
        batch_size,
        (exclude_history,),
        device,
        progress,
        item_chunk,
        seen_penalty,
    )
    return result


@torch.no_grad()
def evaluate_rankings(
    scorer: Scorer,
    data: SequenceData,
    split: str,
    max_len: int,
    batch_size: int = 1024,
    exclude_history: Sequence[bool] = (False, True),
    device: torch.device | str = "cpu",
    progress: bool = False,
    item_chunk: int = 0,
    seen_penalty: float = 0.0,
) -> list[RankingResult]:
    """``evaluate`` under several rankings at once, one per ``exclude_history`` flag (by
    default history kept, then excluded), in that order. The scorer runs once per batch
    of users and every ranking reads its scores, so two rankings cost about one model pass
    instead of two."""
    if split not in ("valid", "test"):
        raise ValueError(f"evaluation split must be 'valid' or 'test', got {split!r}")
    if not exclude_history:
        raise ValueError("evaluate_rankings needs at least one ranking")
    part = data.split(split)
    assert part.targets is not None
    users = np.arange(data.num_users)
    # Users are batched by history length and each batch is padded only to its longest
    # history, so short histories do not pay for long ones; results return in user order.
    lengths = np.minimum(part.ends - part.starts, max_len)
    order = np.argsort(lengths, kind="stable")
    higher = torch.empty(len(exclude_history), data.num_users, dtype=torch.int64)
    ties = torch.empty_like(higher)
    factor = scorer if isinstance(scorer, FactorScorer) else None
    needs_history = seen_penalty != 0 or any(exclude_history)
    batches = range(0, data.num_users, batch_size)
    for start in tqdm(batches, desc=f"rank {split}", unit="batch", disable=not progress):
        batch = order[start : start + batch_size]
        longest = int(lengths[batch].max())
        windows, window_lengths = right_padded(
            part.items, part.starts[batch], part.ends[batch], longest
        )
        targets = torch.from_numpy(part.targets[batch]).to(device)
        histories = torch.from_numpy(windows).to(device)
        history_lengths = torch.from_numpy(window_lengths).to(device)
        full = None
        if needs_history:
            full_length = int((part.ends[batch] - part.starts[batch]).max())
            padded, _ = right_padded(part.items, part.starts[batch], part.ends[batch], full_length)
            full = torch.from_numpy(padded).to(device)  # (B, M) the whole history
        chunked = factor is not None and 0 < item_chunk < factor.weights.size(0)
        if factor is not None:
            hidden = factor.hidden(histories, history_lengths)  # (B, D), once for all rankings
        if not chunked:  # the score matrix, once for all rankings
            scores_once = (
                dot_scores(hidden, factor.weights) if factor else scorer(histories, history_lengths)
            )
        index = torch.from_numpy(batch)
        for ranking, exclude in enumerate(exclude_history):
            excluded = full if exclude else None
            if chunked and factor is not None:
                above, tied = chunked_target_ranks(
                    hidden, factor.weights, targets, excluded, item_chunk, full, seen_penalty
                )
            else:
                scores = scores_once.float()  # (B, N + 1)
                if scores is scores_once and ranking < len(exclude_history) - 1:
                    scores = scores.clone()  # the next ranking needs them unchanged
                scores[:, PAD] = -torch.inf
                if seen_penalty and full is not None:
                    scores = penalise(scores, seen_mask(full, scores.size(1)), seen_penalty)
                if excluded is not None:
                    target_score = scores.gather(1, targets[:, None])
                    scores.scatter_(1, excluded, -torch.inf)
                    scores.scatter_(1, targets[:, None], target_score)
                above, tied = target_ranks(scores, targets)
            higher[ranking, index] = above.cpu()
            ties[ranking, index] = tied.cpu()
    return [
        RankingResult.from_tensors(users, higher[ranking], ties[ranking])
        for ranking in range(len(exclude_history))
    ]


def chunked_target_ranks(
    hidden: Tensor,
    weights: Tensor,
    targets: Tensor,
    history: Tensor | None,
    chunk: int,
    seen: Tensor | None = None,
    seen_penalty: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``target_ranks`` of the scores hidden (B, D) @ weights (N + 1, D).T, computed over
    ``chunk`` items at a time; ``history`` (B, M) PAD-padded items to exclude, if any;
    ``seen`` (B, M) PAD-padded items whose scores drop by ``seen_penalty``.

    The target's score comes from the same kind of product as the chunks' (a (B, B)
    matrix against the targets' rows), and the target's own entry in its chunk is set to
    it, so the target always ties with itself exactly as in the full matrix.
    """
    rows = torch.arange(len(targets), device=targets.device)
    target_score = dot_scores(hidden, weights[targets])[rows, rows]  # (B,)
    penalised = seen is not None and seen_penalty != 0
    if penalised:
        assert seen is not None
        target_seen = (seen == targets[:, None]).any(dim=1)
        target_score = torch.where(target_seen, target_score - seen_penalty, target_score)
    higher = torch.zeros_like(targets)
    ties = torch.zeros_like(targets)
    for start in range(0, weights.size(0), chunk):
        stop = min(start + chunk, weights.size(0))
        scores = dot_scores(hidden, weights[start:stop])  # (B, C)
        if start == PAD:
            scores[:, PAD] = -torch.inf
        if penalised:
            assert seen is not None
            inside = (seen >= start) & (seen < stop) & (seen != PAD)  # (B, M)
            row, col = inside.nonzero(as_tuple=True)
            index = (row, seen[row, col] - start)
            scores[index] = scores[index] - seen_penalty  # repeated items: once
        if history is not None:
            inside = (history >= start) & (history < stop) & (history != PAD)  # (B, M)
            row, col = inside.nonzero(as_tuple=True)
            scores[row, history[row, col] - start] = -torch.inf
        mine = (targets >= start) & (targets < stop)
        scores[rows[mine], targets[mine] - start] = target_score[mine]
        higher += (scores > target_score[:, None]).sum(dim=1)
        ties += (scores == target_score[:, None]).sum(dim=1)
    return higher, ties - 1  # minus the target itself
