"""Mamba4Rec (Liu et al., 2024) and HyMoERec, which is Mamba4Rec with its position-wise
FFN replaced by a Hybrid Mixture of Experts.

Follows the official Mamba4Rec code: item embedding -> dropout -> LayerNorm (no position
embedding); each layer is Mamba -> dropout -> LayerNorm (residual only when stacking more
than one layer) -> FFN sub-layer ``LN(x + dropout(ffn(x)))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from hymoerec.models.base import ModelOutput, RouterStats, SequentialModel
from hymoerec.models.config import one_of, positive_int, probability
from hymoerec.models.layers import LAYER_NORM_EPS, Dropout, ResidualFFN, recbole_init
from hymoerec.models.mamba import Mamba
from hymoerec.models.moe import FFN_KINDS, MoEBackbone, MoEConfig, make_ffn, moe_aux_loss
from hymoerec.schema import ConfigError


@dataclass(frozen=True)
class Mamba4RecConfig:
    """Defaults are the Mamba4Rec paper's MovieLens-1M settings."""

    hidden_size: int = 64  # d_model, also the item embedding size
    num_layers: int = 1  # Mamba layers; one layer and no residual in the paper
    dropout: float = 0.2  # on embeddings, mixer output and FFN
    d_state: int = 32  # SSM state size N
    d_conv: int = 4  # causal depthwise convolution width
    expand: int = 2  # d_inner = expand * hidden_size
    inner_multiplier: int = 4  # FFN width = inner_multiplier * hidden_size
    ffn: str = "dense"  # "dense": Mamba4Rec; "hymoe": HyMoERec
    moe: MoEConfig = field(default_factory=MoEConfig)  # used when ffn == "hymoe"
    # score items with the input item table (Mamba4Rec); False: a separate output table,
    # gSASRec's default (docs/scaling.md tests it with the gbce loss)
    tied_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "d_state", "d_conv", "expand"):
            positive_int(name, getattr(self, name))
        positive_int("inner_multiplier", self.inner_multiplier)
        probability("dropout", self.dropout)
        one_of("ffn", self.ffn, FFN_KINDS)
        if not isinstance(self.moe, MoEConfig):
            raise ConfigError(f"moe must be a MoEConfig, got {type(self.moe).__name__}")


@dataclass(frozen=True)
class HyMoERecConfig(Mamba4RecConfig):
    """Mamba4Rec with the Hybrid MoE FFN; ``ffn`` is fixed to "hymoe"."""

    ffn: str = "hymoe"  # always "hymoe" (use mamba4rec for the dense FFN)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ffn != "hymoe":
            raise ConfigError(
                f"ffn must be 'hymoe' for hymoerec (got {self.ffn!r}); "
                "use the mamba4rec model for a dense FFN"
            )


class MambaLayer(nn.Module):
    def __init__(self, config: Mamba4RecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.mamba = Mamba(d, config.d_state, config.d_conv, config.expand)
        self.residual = config.num_layers > 1  # as in the official code
        self.dropout = Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        inner = config.inner_multiplier * d
        ffn = make_ffn(d, inner, config.dropout, config.ffn, config.moe)
        self.ffn = ResidualFFN(ffn, d, config.dropout)

    def mix(self, x: Tensor, last: Tensor | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) at positions ``last`` when given."""
        h = self.dropout(self.mamba(x, last))  # (B, L, D) or (B, 1, D)
        if last is not None:
            x = x[torch.arange(x.size(0), device=x.device), last][:, None]  # (B, 1, D)
        return self.norm(x + h if self.residual else h)

    def forward(self, x: Tensor, alpha_scale: float) -> tuple[Tensor, RouterStats | None]:
        return self.ffn(self.mix(x), alpha_scale)


class Mamba4Rec(MoEBackbone, SequentialModel):
    def __init__(self, config: Mamba4RecConfig, num_items: int) -> None:
        super().__init__(num_items)
        self.config = config
        d = config.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.dropout = Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.layers = nn.ModuleList(MambaLayer(config) for _ in range(config.num_layers))
        self.output_embedding = (
            None if config.tied_embeddings else nn.Embedding(num_items + 1, d, padding_idx=0)
        )
        # The official Mamba4Rec (RecBole) init. As there, it also re-initialises the
        # mixer's Linear layers, dt_proj's bias included (delta starts near softplus(0));
        # A_log, D and the convolution keep the Mamba init.
        self.apply(recbole_init)

    def forward(self, items: Tensor, alpha_scale: float = 1.0) -> ModelOutput:
        x = self.norm(self.dropout(self.item_embedding(items)))  # (B, L, D)
        stats: list[RouterStats] = []
        for layer in self.layers:
            x, layer_stats = layer(x, alpha_scale)  # (B, L, D)
            if layer_stats is not None:
                stats.append(layer_stats)
        return ModelOutput(x, moe_aux_loss(stats, items, self.config.moe), tuple(stats))

    def item_weights(self) -> Tensor:
        table = self.item_embedding if self.output_embedding is None else self.output_embedding
        return table.weight  # (num_items + 1, D)

    def next_item_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        # Only the last real position is scored: the last layer's mixer computes its
        # output there alone (an unrolled scan, no loop over time) and its FFN, the
        # experts included, runs on that position alone.
        x = self.norm(self.dropout(self.item_embedding(items)))  # (B, L, D)
        *body, last = cast(list[MambaLayer], list(self.layers))
        for layer in body:
            x, _ = layer(x, 1.0)
        x = last.mix(x, (lengths - 1).clamp(min=0))  # (B, 1, D)
        x, _ = last.ffn(x, 1.0)
        return x[:, 0]  # (B, D)


class HyMoERec(Mamba4Rec):
    """HyMoERec: Mamba4Rec whose FFN is a Hybrid MoE (``HyMoERecConfig``)."""

    def __init__(self, config: HyMoERecConfig, num_items: int) -> None:
        super().__init__(config, num_items)
