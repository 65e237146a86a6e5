"""Blocks shared by the models: point-wise FFN, masks, positions, a transformer block.

The FFN slot of the blocks takes either a :class:`PointWiseFFN` (returns a tensor) or a
mixture such as :class:`hymoerec.models.moe.HybridMoE` (called with ``alpha_scale`` and
returning ``(tensor, RouterStats | None)``); :func:`ffn_forward` is the one place that
tells the two apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hymoerec.models.base import RouterStats
from hymoerec.models.ffn_kernel import gelu_dropout

LAYER_NORM_EPS = 1e-12  # RecBole / Mamba4Rec value, kept so results are comparable


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU. The CPU generator costs one call
    per element for ``F.dropout``'s ``bernoulli_`` or a ``torch.rand`` draw, so the mask
    is cut from 16-bit integers instead: one full-range 64-bit draw gives four. An
    element is kept when its integer is at least ``k - 32768``, ``k = round(p * 65536)``,
    that is with probability ``1 - k / 65536`` (within 2^-17 of ``1 - p``), and a kept
    element is scaled by the exact inverse of that probability, so every element keeps
    its mean. ``benchmarks/step_profile.py --dropout`` times it against ``F.dropout``.
    Other devices use ``F.dropout``."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        dropped = round(self.p * 65536)  # k of 65,536 integers drop their element
        if x.device.type != "cpu" or dropped == 65536:
            return F.dropout(x, self.p, True, self.inplace)
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device)
        draws = words.random_(-(2**63), None).view(torch.int16)[: x.numel()].view(x.shape)
        keep = (draws >= dropped - 32768).to(x.dtype)
        return x * keep.mul_(65536 / (65536 - dropped))


class PointWiseFFN(nn.Module):
    """Position-wise feed-forward network: Linear -> GELU -> Dropout -> Linear (GELU and
    dropout fused in CPU training with ``train.native_kernels``: ``ffn_kernel``)."""

    def __init__(self, d_model: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, inner)
        self.w_2 = nn.Linear(inner, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = gelu_dropout(self.w_1(x), self.dropout.p, self.training, self.dropout)
        return self.w_2(hidden)  # (..., D)


def ffn_forward(ffn: nn.Module, x: Tensor, alpha_scale: float) -> tuple[Tensor, RouterStats | None]:
    """Run a dense FFN or a mixture of experts on ``x``; mixtures also return routing."""
    if isinstance(ffn, PointWiseFFN):
        return ffn(x), None
    y, stats = ffn(x, alpha_scale)
    return y, stats


class ResidualFFN(nn.Module):
    """Post-LN FFN sub-layer: ``LN(x + dropout(ffn(x)))``."""

    def __init__(self, ffn: nn.Module, d_model: int, dropout: float) -> None:
        super().__init__()
        self.ffn = ffn
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor, alpha_scale: float) -> tuple[Tensor, RouterStats | None]:
        y, stats = ffn_forward(self.ffn, x, alpha_scale)  # (B, L, D)
        return self.norm(x + self.dropout(y)), stats


@torch.no_grad()
def recbole_init(module: nn.Module) -> None:
    """RecBole's init, used with ``model.apply``: N(0, 0.02) weights for Linear and
    Embedding, zero biases, unit LayerNorm; the padding row is zeroed."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.normal_(0.0, 0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.zero_()
    if isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        module.weight[module.padding_idx].zero_()


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """(L, L) bool, True where query i may attend key j, i.e. j <= i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class PositionEmbedding(nn.Module):
    """Learned absolute position embedding for sequences of at most ``max_len`` items."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, length: int) -> Tensor:
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len}")
        return self.embedding.weight[:length]  # (L, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``."""

    def __init__(self, d_model: int, num_heads: int, attn_dropout: float) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"hidden size {d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.attn_dropout = attn_dropout

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, L, D); allowed: (B, 1, L, L) bool, True where query i may see key j."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.num_heads, d // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, D/H)
        dropout = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(b, length, d))  # (B, L, D)


class TransformerBlock(nn.Module):
    """Post-LN transformer layer as in SASRec / RecBole, with any FFN module.

    ``x = LN(x + drop(attn(x)))``; ``x = LN(x + drop(ffn(x)))``.
    """

    def __init__(
        self, d_model: int, num_heads: int, ffn: nn.Module, dropout: float, attn_dropout: float
    ) -> None:
        super().__init__()
        self.attention = SelfAttention(d_model, num_heads, attn_dropout)
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.ffn = ResidualFFN(ffn, d_model, dropout)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor,
        alpha_scale: float = 1.0,
    ) -> tuple[Tensor, RouterStats | None]:
        """x: (B, L, D); attn_mask: (L, L) bool True = may attend, None = bidirectional;
        key_padding_mask: (B, L) bool True = padding key."""
        length = x.size(1)
        allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, L)
        if attn_mask is not None:
            allowed = allowed & attn_mask  # (B, 1, L, L)
        # Every query may see itself: padding queries would otherwise have no visible key
        # (NaN softmax); real queries see themselves anyway, so real outputs are unchanged.
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=x.device)  # (B, 1, L, L)
        x = self.norm(x + self.dropout(self.attention(x, allowed)))  # (B, L, D)
        return self.ffn(x, alpha_scale)


def padded_rows(rows: Tensor, multiple: int) -> Tensor:
    """``rows`` (T, D) followed by zero rows up to a multiple of ``multiple`` rows: fewer
    distinct shapes for the products that take it (oneDNN builds a kernel per shape)."""
    extra = -rows.size(0) % multiple
    return F.pad(rows, (0, 0, 0, extra)) if extra else rows
