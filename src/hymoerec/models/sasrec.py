"""SASRec (Kang & McAuley, 2018): causal self-attention over the item history.

Layout as in RecBole: (item + learned position embedding) -> LayerNorm -> dropout ->
post-LN transformer layers. ``ffn: hymoe`` puts the Hybrid MoE into every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from hymoerec.models.base import ModelOutput, RouterStats, SequentialModel
from hymoerec.models.config import one_of, positive_int, probability
from hymoerec.models.layers import (
    LAYER_NORM_EPS,
    Dropout,
    PositionEmbedding,
    causal_mask,
    recbole_init,
)
from hymoerec.models.moe import FFN_KINDS, MoEBackbone, MoEConfig, moe_aux_loss
from hymoerec.models.transformer import transformer_layers
from hymoerec.schema import ConfigError


@dataclass(frozen=True)
class SASRecConfig:
    """RecBole's sasrec.yaml defaults, except dropout 0.2 (RecBole: 0.5) as in the
    Mamba4Rec paper's baseline runs."""

    hidden_size: int = 64  # embedding and model width
    num_layers: int = 2  # transformer layers
    num_heads: int = 2  # attention heads; must divide hidden_size
    inner_size: int = 256  # FFN width (4 * hidden_size)
    dropout: float = 0.2  # on embeddings and sub-layer outputs
    attn_dropout: float = 0.2  # on attention probabilities
    max_len: int = 200  # longest history; sizes the position embedding
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
        one_of("ffn", self.ffn, FFN_KINDS)
        if not isinstance(self.moe, MoEConfig):
            raise ConfigError(f"moe must be a MoEConfig, got {type(self.moe).__name__}")


class SASRec(MoEBackbone, SequentialModel):
    def __init__(self, config: SASRecConfig, num_items: int) -> None:
        super().__init__(num_items)
        self.config = config
        d = config.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.position = PositionEmbedding(config.max_len, d)
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(config.dropout)
        self.layers = transformer_layers(config)
        self.apply(recbole_init)

    def forward(self, items: Tensor, alpha_scale: float = 1.0) -> ModelOutput:
        length = items.size(1)
        x = self.item_embedding(items) + self.position(length)  # (B, L, D)
        x = self.dropout(self.norm(x))
        causal = causal_mask(length, items.device)  # (L, L)
        padding = items == 0  # (B, L)
        stats: list[RouterStats] = []
        for layer in self.layers:
            x, layer_stats = layer(x, causal, padding, alpha_scale)  # (B, L, D)
            if layer_stats is not None:
                stats.append(layer_stats)
        return ModelOutput(x, moe_aux_loss(stats, items, self.config.moe), tuple(stats))

    def item_weights(self) -> Tensor:
        return self.item_embedding.weight  # (num_items + 1, D)
