"""BERT4Rec (Sun et al., 2019): bidirectional transformer trained on masked items.

The item table has ``num_items + 2`` rows: 0 is padding, ``num_items + 1`` is [MASK].
The trainer replaces a random ``mask_prob`` share of real items by ``model.mask_token``
and applies the loss at those positions; to predict the next item, the history is
followed by [MASK] and the hidden state there is used (``next_item_hidden``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hymoerec.models.base import ModelOutput, RouterStats, SequentialModel
from hymoerec.models.config import one_of, positive_int, probability
from hymoerec.models.layers import LAYER_NORM_EPS, Dropout, PositionEmbedding, recbole_init
from hymoerec.models.moe import FFN_KINDS, MoEBackbone, MoEConfig, moe_aux_loss
from hymoerec.models.transformer import transformer_layers
from hymoerec.schema import ConfigError


@dataclass(frozen=True)
class BERT4RecConfig:
    """RecBole's bert4rec.yaml defaults."""

    hidden_size: int = 64  # embedding and model width
    num_layers: int = 2  # transformer layers
    num_heads: int = 2  # attention heads; must divide hidden_size
    inner_size: int = 256  # FFN width (4 * hidden_size)
    dropout: float = 0.2  # on embeddings and sub-layer outputs
    attn_dropout: float = 0.2  # on attention probabilities
    mask_prob: float = 0.2  # share of real items the trainer replaces by [MASK]
    max_len: int = 200  # longest input, [MASK] included; sizes the position embedding
    ffn: str = "dense"  # "dense" or "hymoe" (Hybrid MoE in every layer)
    moe: MoEConfig = field(default_factory=MoEConfig)  # used when ffn == "hymoe"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "inner_size", "max_len"):
            positive_int(name, getattr(self, name))
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} must divide hidden_size={self.hidden_size}"
            )
        probability("dropout", self.dropout)
        probability("attn_dropout", self.attn_dropout)
        probability("mask_prob", self.mask_prob)
        if self.mask_prob == 0:
            raise ConfigError("mask_prob must be > 0: BERT4Rec learns only from masked items")
        one_of("ffn", self.ffn, FFN_KINDS)
        if not isinstance(self.moe, MoEConfig):
            raise ConfigError(f"moe must be a MoEConfig, got {type(self.moe).__name__}")


class BERT4Rec(MoEBackbone, SequentialModel):
    bidirectional = True

    def __init__(self, config: BERT4RecConfig, num_items: int) -> None:
        super().__init__(num_items)
        self.config = config
        self.mask_token = num_items + 1
        d = config.hidden_size
        self.item_embedding = nn.Embedding(num_items + 2, d, padding_idx=0)
        self.position = PositionEmbedding(config.max_len, d)
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(config.dropout)
        self.layers = transformer_layers(config)
        # RecBole's output transform before scoring against the item table
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=LAYER_NORM_EPS))
        self.apply(recbole_init)

    def forward(self, items: Tensor, alpha_scale: float = 1.0) -> ModelOutput:
        length = items.size(1)
        x = self.item_embedding(items) + self.position(length)  # (B, L, D)
        x = self.dropout(self.norm(x))
        padding = items == 0  # (B, L) padding keys are never attended to
        stats: list[RouterStats] = []
        for layer in self.layers:
            x, layer_stats = layer(x, None, padding, alpha_scale)  # (B, L, D)
            if layer_stats is not None:
                stats.append(layer_stats)
        aux = moe_aux_loss(stats, items, self.config.moe)
        return ModelOutput(self.head(x), aux, tuple(stats))

    def item_weights(self) -> Tensor:
        return self.item_embedding.weight[: self.num_items + 1]  # (num_items + 1, D), no [MASK]

    def next_item_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        """Hidden state at a [MASK] appended after each history. A history that would not
        fit in ``max_len`` with the [MASK] loses its oldest items."""
        rows = torch.arange(items.size(0), device=items.device)
        seq = F.pad(items, (0, 1))  # (B, L + 1)
        seq[rows, lengths] = self.mask_token
        position = lengths
        if seq.size(1) > self.config.max_len:
            start = (lengths + 1 - self.config.max_len).clamp(min=0)  # (B,)
            window = torch.arange(self.config.max_len, device=items.device)
            seq = seq.gather(1, start[:, None] + window)  # (B, max_len)
            position = lengths - start
        return self(seq).hidden[rows, position]  # (B, D)
