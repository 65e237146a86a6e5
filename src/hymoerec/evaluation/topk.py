"""Top-k items of a catalogue too large for one (B, N + 1) score matrix.

Scores are computed against one chunk of the item table at a time and merged into a
running (B, k) best list, so memory is (B x (chunk + k)) whatever the catalogue size; the
result equals ``torch.topk`` over the full score matrix (up to the order of exact ties).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hymoerec.data.interactions import PAD

DEFAULT_CHUNK = 65_536  # items scored at once: 64 MiB of float32 scores for 256 users


@torch.no_grad()
def chunked_topk(
    hidden: Tensor,
    weights: Tensor,
    k: int,
    exclude: Tensor | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """The ``k`` highest-scoring items for each row of ``hidden``, best first.

    hidden: (B, D) user representations; weights: (N + 1, D) item table whose row 0 is
    padding; exclude: (B, M) item ids never to return (e.g. items already seen), padded
    with PAD. Returns (scores (B, k') float32, ids (B, k') int64) with k' = min(k, N).
    Padding is never recommended: where exclusion leaves fewer than k' items for a row,
    the unfilled slots hold score -inf and id PAD, which callers drop.
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"k={k} and chunk={chunk} must be at least 1")
    num_items = weights.size(0) - 1
    k = min(k, num_items)
    rows = hidden.size(0)
    hidden = hidden.float()
    best_scores = hidden.new_full((rows, k), -torch.inf)
    best_ids = torch.full((rows, k), PAD, dtype=torch.int64, device=hidden.device)
    if exclude is not None:
        exclude = exclude.to(hidden.device, torch.int64)
    for start in range(0, num_items + 1, chunk):
        stop = min(start + chunk, num_items + 1)
        scores = hidden @ weights[start:stop].float().T  # (B, C)
        if start == 0:
            scores[:, PAD] = -torch.inf
        if exclude is not None:
            inside = (exclude >= start) & (exclude < stop) & (exclude != PAD)  # (B, M)
            row, col = inside.nonzero(as_tuple=True)
            scores[row, exclude[row, col] - start] = -torch.inf
        ids = torch.arange(start, stop, device=hidden.device).expand(rows, -1)  # (B, C)
        merged_scores = torch.cat([best_scores, scores], dim=1)  # (B, k + C)
        merged_ids = torch.cat([best_ids, ids], dim=1)
        best_scores, position = merged_scores.topk(k, dim=1)
        best_ids = merged_ids.gather(1, position)
    best_ids[best_scores == -torch.inf] = PAD  # unfilled slots, never an excluded item
    return best_scores, best_ids
