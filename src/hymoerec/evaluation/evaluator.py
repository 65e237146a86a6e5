"""Batched full-ranking evaluation of any scorer on a leave-one-out split."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from hymoerec.data.batches import right_padded
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.metrics import RankingResult, target_ranks

# (histories (B, L) right-padded, lengths (B,)) -> scores (B, N + 1) for items 0..N
Scorer = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def evaluate(
    scorer: Scorer,
    data: SequenceData,
    split: str,
    max_len: int,
    batch_size: int = 1024,
    exclude_history: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> RankingResult:
    """Rank every item for every user of ``split`` ('valid' or 'test').

    The scorer sees each history cut to its last ``max_len`` items. Padding is never
    ranked. With ``exclude_history`` every item of the user's full history (except the
    target itself) is removed from the ranking; the paper's protocol keeps them.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"evaluation split must be 'valid' or 'test', got {split!r}")
    part = data.split(split)
    assert part.targets is not None
    users = np.arange(data.num_users)
    # Users are batched by history length and each batch is padded only to its longest
    # history, so short histories do not pay for long ones; results return in user order.
    lengths = np.minimum(part.ends - part.starts, max_len)
    order = np.argsort(lengths, kind="stable")
    higher = torch.empty(data.num_users, dtype=torch.int64)
    ties = torch.empty(data.num_users, dtype=torch.int64)
    batches = range(0, data.num_users, batch_size)
    for start in tqdm(batches, desc=f"rank {split}", unit="batch", disable=not progress):
        batch = order[start : start + batch_size]
        longest = int(lengths[batch].max())
        windows, window_lengths = right_padded(
            part.items, part.starts[batch], part.ends[batch], longest
        )
        targets = torch.from_numpy(part.targets[batch]).to(device)
        scores = scorer(
            torch.from_numpy(windows).to(device), torch.from_numpy(window_lengths).to(device)
        )
        scores = scores.float()  # (B, N + 1)
        scores[:, PAD] = -torch.inf
        if exclude_history:
            target_score = scores.gather(1, targets[:, None])
            full_length = int((part.ends[batch] - part.starts[batch]).max())
            full, _ = right_padded(part.items, part.starts[batch], part.ends[batch], full_length)
            scores.scatter_(1, torch.from_numpy(full).to(device), -torch.inf)
            scores.scatter_(1, targets[:, None], target_score)
        above, tied = target_ranks(scores, targets)
        index = torch.from_numpy(batch)
        higher[index] = above.cpu()
        ties[index] = tied.cpu()
    return RankingResult.from_tensors(users, higher, ties)
