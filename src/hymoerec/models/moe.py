"""Hybrid Mixture of Experts (HyMoERec): a shared dense FFN plus top-K routed experts.

    y = y_dense + alpha * y_MoE,   y_MoE = sum_{i in TopK} g_i f_i(x),
    alpha = sigmoid(a) * w(t),     w(t) = min(1, t / T_warmup)

``w(t)`` is computed by the trainer and passed in as ``alpha_scale``; the modules keep no
step counter. The load-balance regulariser ``sum_e gbar_e log gbar_e`` is the pure
function :func:`balance_loss`; the model multiplies it by ``MoEConfig.balance_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hymoerec.models.base import RouterStats
from hymoerec.models.config import non_negative, one_of, positive_int
from hymoerec.models.layers import PointWiseFFN, padded_rows
from hymoerec.schema import ConfigError

FUSIONS = ("adaptive", "fixed", "no_warmup", "dense", "sparse")
FFN_KINDS = ("dense", "hymoe")  # the ffn option of the backbones


@dataclass(frozen=True)
class MoEConfig:
    """The expert width and dropout are the backbone's FFN ones, so that the shared
    expert and every routed expert have the same shape as the plain FFN they replace."""

    num_experts: int = 4  # E routed experts per layer
    top_k: int = 2  # K experts run per token
    warmup_steps: int = 500  # T_warmup; the trainer passes alpha_scale = min(1, t / T_warmup)
    balance_weight: float = 0.02  # lambda_lb, coefficient of the load-balance loss
    router_hidden: int = 64  # hidden width of the two-layer router (= hidden size at defaults)
    fusion: str = "adaptive"  # how y_dense and y_MoE combine, one of FUSIONS (ablations)
    fixed_alpha: float = 1.0  # alpha used by fusion="fixed"

    def __post_init__(self) -> None:
        positive_int("moe.num_experts", self.num_experts)
        positive_int("moe.top_k", self.top_k)
        if self.top_k > self.num_experts:
            raise ConfigError(f"moe.top_k={self.top_k} exceeds moe.num_experts={self.num_experts}")
        positive_int("moe.warmup_steps", self.warmup_steps)
        non_negative("moe.balance_weight", self.balance_weight)
        positive_int("moe.router_hidden", self.router_hidden)
        one_of("moe.fusion", self.fusion, FUSIONS)
        non_negative("moe.fixed_alpha", self.fixed_alpha)


def warmup_scale(step: int, warmup_steps: int) -> float:
    """w(t) = min(1, t / T_warmup): the alpha_scale a trainer passes at optimizer step t."""
    return min(1.0, step / warmup_steps)


class Router(nn.Module):
    """Two-layer MLP giving one logit per expert and token."""

    def __init__(self, d_model: int, hidden: int, num_experts: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, hidden)
        self.w_2 = nn.Linear(hidden, num_experts)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.gelu(self.w_1(x)))  # (..., E)


def top_k_gates(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Gates g = softmax(TopK(r(x))): softmax over the K kept logits only, in float32.

    Returns (gates, experts), both (..., K)."""
    top_logits, experts = logits.float().topk(k, dim=-1)  # (..., K)
    return top_logits.softmax(dim=-1), experts


class RoutedExperts(nn.Module):
    """E experts; each token runs only through its K selected experts (Mixtral style)."""

    def __init__(self, d_model: int, inner: int, dropout: float, num_experts: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            PointWiseFFN(d_model, inner, dropout) for _ in range(num_experts)
        )

    def forward(self, x: Tensor, gates: Tensor, experts: Tensor) -> Tensor:
        """y_MoE = sum_i g_i f_i(x). x: (..., D); gates, experts: (..., K)."""
        flat = x.reshape(-1, x.size(-1))  # (T, D)
        gates = gates.reshape(-1, gates.size(-1)).to(x.dtype)  # (T, K)
        experts = experts.reshape(-1, experts.size(-1))  # (T, K)
        out = torch.zeros_like(flat)  # (T, D)
        flat_gates = gates.reshape(-1)  # (T * K,)
        # index_select, not flat[token]: its gradient is an index_add_, where indexing's
        # is an accumulating index_put_, the slower of the two on CPU
        for e in experts.unique().tolist():
            token, slot = torch.where(experts == e)  # tokens that picked expert e
            rows = padded_rows(flat.index_select(0, token), GROUP_ROWS)
            y = self.experts[e](rows)[: token.numel()]  # (T_e, D)
            gate = flat_gates.index_select(0, token * gates.size(-1) + slot)  # (T_e,)
            out.index_add_(0, token, (y * gate[:, None]).to(out.dtype))
        return out.view_as(x)


# Each expert's group of tokens is padded with zero rows to a multiple of this many, so
# its products take a few shapes instead of a new one every step: oneDNN (bf16 on CPU)
# builds a kernel for every new shape (docs/training.md "Speed", "What a step costs
# besides its tokens"). The padded rows add nothing to any gradient.
GROUP_ROWS = 64


class HybridMoE(nn.Module):
    """Shared dense FFN + routed experts, fused by ``fusion`` (see ``MoEConfig``).

    forward returns ``(y, RouterStats)``; RouterStats is None for ``fusion="dense"``,
    which has no router and equals a plain point-wise FFN.
    """

    def __init__(self, d_model: int, inner: int, dropout: float, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.dense = PointWiseFFN(d_model, inner, dropout) if config.fusion != "sparse" else None
        if config.fusion != "dense":
            self.router = Router(d_model, config.router_hidden, config.num_experts)
            self.routed = RoutedExperts(d_model, inner, dropout, config.num_experts)
        if config.fusion in ("adaptive", "no_warmup"):
            self.alpha_logit = nn.Parameter(torch.zeros(()))  # a; sigmoid(0) = 0.5 at start

    def alpha(self, alpha_scale: float) -> Tensor | float:
        """Weight of y_MoE in y = y_dense + alpha * y_MoE."""
        fusion = self.config.fusion
        if fusion == "adaptive":
            return torch.sigmoid(self.alpha_logit) * alpha_scale
        if fusion == "no_warmup":
            return torch.sigmoid(self.alpha_logit)
        if fusion == "fixed":
            return self.config.fixed_alpha
        return 1.0 if fusion == "sparse" else 0.0  # sparse: y = y_MoE; dense: y = y_dense

    def forward(self, x: Tensor, alpha_scale: float = 1.0) -> tuple[Tensor, RouterStats | None]:
        if self.dense is not None and self.config.fusion == "dense":
            return self.dense(x), None  # (B, L, D)
        logits = self.router(x)  # (B, L, E)
        probs = logits.float().softmax(dim=-1)  # (B, L, E) full softmax, for the balance loss
        gates, experts = top_k_gates(logits, self.config.top_k)  # (B, L, K)
        y_moe = self.routed(x, gates, experts)  # (B, L, D)
        stats = RouterStats(probs=probs, gates=torch.zeros_like(probs).scatter(-1, experts, gates))
        if self.dense is None:  # "sparse": no shared expert
            return y_moe, stats
        return self.dense(x) + self.alpha(alpha_scale) * y_moe, stats


def balance_loss(probs: Tensor, mask: Tensor) -> Tensor:
    """Load-balance regulariser ``sum_e gbar_e log gbar_e``, averaged over sequences.

    probs: (B, L, E) full router softmax; mask: (B, L) bool, True for real items.
    ``gbar_e`` is the mean probability of expert e over one sequence's real items; the
    per-sequence term is averaged over sequences with at least one real item. It is the
    negative entropy of the mean routing: ``-log E`` under uniform routing (its minimum)
    and 0 when one expert takes everything.

    It uses the full softmax, not the top-K gates: the gates are zero for unselected
    experts (``log 0``) and change only through the K kept logits, so most experts would
    get no gradient; the full softmax gives every expert's logit a gradient, as in the
    Switch Transformer / GShard auxiliary losses.
    """
    real = mask.unsqueeze(-1)  # (B, L, 1)
    count = real.sum(dim=1).to(probs.dtype)  # (B, 1)
    gbar = torch.where(real, probs, 0.0).sum(dim=1) / count.clamp(min=1.0)  # (B, E)
    per_sequence = torch.xlogy(gbar, gbar).sum(dim=-1)  # (B,)
    has_items = (count.squeeze(-1) > 0).to(probs.dtype)  # (B,)
    return (per_sequence * has_items).sum() / has_items.sum().clamp(min=1.0)


def make_ffn(d_model: int, inner: int, dropout: float, kind: str, moe: MoEConfig) -> nn.Module:
    """The FFN of one layer: a point-wise FFN or a Hybrid MoE of the same width."""
    if kind == "hymoe":
        return HybridMoE(d_model, inner, dropout, moe)
    return PointWiseFFN(d_model, inner, dropout)


def moe_aux_loss(stats: list[RouterStats], items: Tensor, moe: MoEConfig) -> Tensor:
    """balance_weight * sum over MoE layers of balance_loss, padding excluded."""
    mask = items != 0  # (B, L)
    total = sum(
        (balance_loss(s.probs, mask) for s in stats), items.new_zeros((), dtype=torch.float)
    )
    return moe.balance_weight * total


class MoEBackbone(nn.Module):
    """Mixin for backbones whose config has ``ffn`` and ``moe``: what the trainer reads to
    schedule and log the fusion."""

    config: Any

    @property
    def fusion_warmup_steps(self) -> int:
        """T_warmup of alpha_scale = min(1, t / T_warmup); 0 when nothing is warmed up."""
        moe = self.config.moe
        uses_warmup = self.config.ffn == "hymoe" and moe.fusion == "adaptive"
        return int(moe.warmup_steps) if uses_warmup else 0

    @torch.no_grad()
    def fusion_alphas(self, alpha_scale: float) -> list[float]:
        """The effective alpha of every HybridMoE layer, in order."""
        return [float(m.alpha(alpha_scale)) for m in self.modules() if isinstance(m, HybridMoE)]
