"""The stack of transformer blocks SASRec and BERT4Rec share (causal or bidirectional is
the caller's mask); each block's FFN is a point-wise FFN or the Hybrid MoE."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from hymoerec.models.layers import TransformerBlock
from hymoerec.models.moe import MoEConfig, make_ffn


class TransformerOptions(Protocol):
    """The options of a model config that size its transformer stack."""

    @property
    def hidden_size(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def inner_size(self) -> int: ...
    @property
    def dropout(self) -> float: ...
    @property
    def attn_dropout(self) -> float: ...
    @property
    def ffn(self) -> str: ...
    @property
    def moe(self) -> MoEConfig: ...


def transformer_layers(config: TransformerOptions) -> nn.ModuleList:
    """``config.num_layers`` blocks of width ``config.hidden_size``."""
    d = config.hidden_size
    return nn.ModuleList(
        TransformerBlock(
            d,
            config.num_heads,
            make_ffn(d, config.inner_size, config.dropout, config.ffn, config.moe),
            config.dropout,
            config.attn_dropout,
        )
        for _ in range(config.num_layers)
    )
