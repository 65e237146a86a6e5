"""The one small interface every sequential model implements.

Sequences are RIGHT-padded with ``PAD = 0``: position ``j < length`` holds the j-th item
of the history, positions ``j >= length`` hold padding. For causal models this means
padding can never influence a real position; bidirectional models mask it explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class RouterStats:
    """Routing of one mixture-of-experts layer over a batch.

    probs: (B, L, E) full softmax over the E router logits (float32).
    gates: (B, L, E) the top-K gates actually used (zero for unselected experts).
    """

    probs: Tensor
    gates: Tensor


@dataclass(frozen=True)
class ModelOutput:
    hidden: Tensor  # (B, L, D) sequence representations, one per position
    aux_loss: Tensor  # scalar auxiliary loss already weighted by its coefficient; 0 if none
    router: tuple[RouterStats, ...] = field(default=())  # one entry per MoE layer


class SequentialModel(nn.Module):
    """Base class: encode histories, score every item of the catalogue.

    Subclasses set ``bidirectional = True`` when they are trained on masked items
    (BERT4Rec) instead of next-item prediction at every position.
    """

    bidirectional: bool = False
    config: Any  # the model's frozen config dataclass

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items  # real items are 1..num_items; 0 is padding

    def forward(self, items: Tensor, alpha_scale: float = 1.0) -> ModelOutput:
        """items: (B, L) right-padded ids. alpha_scale: the fusion warm-up factor
        min(1, t / T_warmup) computed by the trainer from the optimizer step (ignored by
        models without a mixture of experts)."""
        raise NotImplementedError

    @property
    def fusion_warmup_steps(self) -> int:
        """T_warmup of the fusion warm-up factor min(1, t / T_warmup) the trainer passes as
        ``alpha_scale``; 0 for models with nothing to warm up."""
        return 0

    def item_weights(self) -> Tensor:
        """(num_items + 1, D) table whose dot products with hidden states are the scores;
        row 0 (padding) is never ranked."""
        raise NotImplementedError

    def next_item_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        """(B, D) representation that predicts the item after each history."""
        hidden = self(items).hidden  # (B, L, D)
        last = (lengths - 1).clamp(min=0)
        return hidden[torch.arange(items.size(0), device=items.device), last]  # (B, D)

    def score(self, items: Tensor, lengths: Tensor) -> Tensor:
        """(B, num_items + 1) scores of every item as the next one."""
        return self.next_item_hidden(items, lengths) @ self.item_weights().T
