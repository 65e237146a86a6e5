"""Training losses over the item catalogue: exact full-softmax CE and two sampled ones.

``full_softmax_ce`` is the textbook version: it materialises the (T, N + 1) logits and
lets autograd keep them for the backward pass. ``chunked_softmax_ce`` computes the same
loss and the same gradients over chunks of targets, deriving the gradients already in
the forward pass (softmax - one-hot) while each chunk's logits are still in cache. Peak
memory is then (chunk x N) instead of (T x N), with the chunk shrunk on large catalogues
so that it stays under ``MAX_CHUNK_LOGITS``; on a CPU it also runs about twice as fast
(benchmarks/train_speed.py).

Exact CE still costs T x N dot products per step. For catalogues of millions of items the
two approximate losses score each target against S shared sampled negatives instead
(T x S): ``SampledSoftmaxCE`` (popularity-sampled, logQ-corrected softmax) and ``GBCE``
(gSASRec's generalised binary cross-entropy with uniform negatives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hymoerec.config import TrainConfig
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData
from hymoerec.models.layers import padded_rows
from hymoerec.training import ce_kernel
from hymoerec.training.softmax_kernel import softmax_nll

# loss(hidden (T, D), item table (N + 1, D), targets (T,)) -> mean loss over the targets
LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]

MAX_CHUNK_LOGITS = 1 << 25  # float32 logits per chunk (128 MiB): 256 targets up to 131k items
CHUNK_ROWS = 32  # a last, shorter chunk is padded to a multiple of this many targets


def full_softmax_ce(hidden: Tensor, weights: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the targets under a softmax over all N items.

    hidden: (T, D) one representation per training target; weights: (N + 1, D) item table
    (row 0 is padding and gets no probability); targets: (T,) ids in 1..N.
    """
    logits = hidden @ weights.T  # (T, N + 1)
    logits[:, PAD] = -torch.inf
    return F.cross_entropy(logits.float(), targets)


def _chunk_products(
    h_all: Tensor, table: Tensor, weights: Tensor, targets: Tensor, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(sum of the targets' -log p, d/d hidden, d/d weights), not yet averaged, from the
    three products of each chunk of targets in ``table``'s dtype; h_all (T, D) is hidden
    in that dtype."""
    table_t = table.T.contiguous()  # (D, N + 1): the fast layout for the logits
    grad_hidden = torch.empty(h_all.shape, dtype=torch.float32, device=h_all.device)
    grad_weights = torch.zeros(weights.shape, dtype=torch.float32, device=weights.device)
    total = torch.zeros((), dtype=torch.float64, device=h_all.device)
    for start in range(0, h_all.size(0), chunk):
        h, y = h_all[start : start + chunk], targets[start : start + chunk]
        rows = h.size(0)
        # a last, shorter chunk is padded with zero rows, which add nothing to the sums
        # below: a few shapes of products instead of one per batch
        h = padded_rows(h, min(chunk, CHUNK_ROWS))
        logits = h @ table_t  # (C, N + 1)
        probs, nll = softmax_nll(logits, y)  # (C, N + 1), (rows,)
        total += nll.sum()
        # d CE / d logits = softmax - one_hot(target); the one-hot part is added exactly,
        # in float32, as rows of the table and of the hidden states
        grad = (probs @ table)[:rows].float() - weights[y].float()  # (rows, D)
        grad_hidden[start : start + chunk] = grad
        grad_weights.add_(probs.T @ h).index_add_(0, y, h[:rows].float(), alpha=-1.0)
    return total, grad_hidden, grad_weights


def _fused(
    h_all: Tensor, table: Tensor, weights: Tensor, targets: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """What ``_chunk_products`` returns, from the bf16 kernel of ``ce_kernel``."""
    nll, grad_hidden, grad_weights = ce_kernel.fused_ce(h_all, table, targets)
    grad_hidden -= weights[targets].float()
    grad_weights.index_add_(0, targets, h_all.float(), alpha=-1.0)
    return nll.sum(), grad_hidden, grad_weights


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: Tensor, weights: Tensor, targets: Tensor, chunk: int, dtype: torch.dtype
    ) -> Tensor:
        # The three products (the logits and the two gradients) run in ``dtype``; the
        # softmax and every sum over items or targets accumulate in float32, and the
        # gradients are added to float32 totals. In bf16 one kernel does it all, where
        # it runs (``ce_kernel.fits``).
        with torch.autocast(hidden.device.type, enabled=False):
            h_all, table = hidden.to(dtype), weights.to(dtype)  # (T, D), (N + 1, D)
            if ce_kernel.fits(h_all, table):
                total, grad_hidden, grad_weights = _fused(h_all, table, weights, targets)
            else:
                products = _chunk_products(h_all, table, weights, targets, chunk)
                total, grad_hidden, grad_weights = products
        count = max(hidden.size(0), 1)
        ctx.save_for_backward(grad_hidden / count, grad_weights / count)
        ctx.hidden_dtype = hidden.dtype
        return (total / count).float()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
        grad_hidden, grad_weights = ctx.saved_tensors
        return (grad_hidden * grad).to(ctx.hidden_dtype), grad_weights * grad, None, None, None


def chunked_softmax_ce(
    hidden: Tensor, weights: Tensor, targets: Tensor, chunk: int = 256
) -> Tensor:
    """Same value and gradients as ``full_softmax_ce``, memory bounded by ``chunk`` rows of
    logits and by ``MAX_CHUNK_LOGITS`` in all (1M items: 32 targets at a time).

    Under a bfloat16 autocast (``train.bf16``) the three item-table products run in
    bfloat16, the softmax and every sum in float32: the same loss up to bfloat16 rounding
    of the scores and of the per-chunk gradient products (tests/training/test_loss.py).

    256 targets a chunk keep a chunk's logits closer to the cache than 512 did: 1.38x
    (bf16, ML-1M shapes) and 1.09x (Beauty) for the whole loss on this 2-core CPU
    (``benchmarks/train_speed.py --loss-only 6400,3416,64 --chunks 512,256,128``)."""
    chunk = max(1, min(chunk, MAX_CHUNK_LOGITS // weights.size(0)))
    loss: Tensor = _ChunkedSoftmaxCE.apply(hidden, weights, targets, chunk, matmul_dtype(hidden))
    return loss


def matmul_dtype(like: Tensor) -> torch.dtype:
    """bfloat16 inside a bfloat16 autocast region on ``like``'s device, else float32."""
    device = like.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


# the exact losses, which need nothing but their arguments
LOSSES: dict[str, LossFn] = {"ce": full_softmax_ce, "chunked_ce": chunked_softmax_ce}


def _block_scores(
    hidden: Tensor, weights: Tensor, targets: Tensor, sampled: Tensor, size: int
) -> tuple[Tensor, Tensor]:
    """Scores of each block of ``size`` consecutive targets against its own draw.

    hidden (T, D), targets (T,), sampled (G, S) with G = ceil(T / size): one (G, S, D)
    gather and one batched product. Returns (scores (G, size, S) in float32, real
    (G, size, S): False where a negative is its row's target or the row is filler)."""
    count, dim = hidden.shape
    blocks = sampled.size(0)
    pad = blocks * size - count
    grouped = F.pad(hidden, (0, 0, 0, pad)).view(blocks, size, dim)  # (G, size, D)
    rows = F.pad(targets, (0, pad)).view(blocks, size)  # (G, size), PAD = filler
    scores = torch.bmm(grouped, weights[sampled].transpose(1, 2)).float()  # (G, size, S)
    real = (sampled[:, None, :] != rows[:, :, None]) & (rows[:, :, None] != PAD)
    return scores, real


class SampledSoftmaxCE:
    """Softmax over the target and S negatives drawn from Q, with the logQ correction.

    The sum over the other items in the softmax's denominator is estimated by importance
    sampling (Bengio & Senecal 2008): each drawn item j enters with its score minus
    log(S * Q(j)), the log of its expected number of draws, so that popular items, drawn
    more often, are not penalised more. The target is not corrected: it is in every row's
    softmax with probability one, not drawn. (Correcting it too, as TensorFlow's
    ``sampled_softmax_loss`` does for its "true classes", multiplies the negatives' share
    of the denominator by S * Q(target), so that a rare target's loss nearly vanishes.)
    A negative that equals a row's target is masked out. Q is the training frequency plus
    one, so every item can be drawn; with ``uniform=True`` Q is uniform instead. With
    every item drawn many times the loss tends to exact CE (tests/training/test_loss.py).

    Each block of ``TARGETS_PER_DRAW`` consecutive targets draws its own S negatives: a
    step of T targets then pushes down T / 64 * S draws (25,600 for a (32, 200) batch and
    S = 256: every item of ML-1M several times over) instead of S shared by the whole
    batch, which left most of the item table without a gradient in a step; the gather is
    (T / 64, S, D), the size of the (T, S) scores when D = 64. On ML-1M that took the
    loss from 83% to 94-99% of exact CE's test NDCG@10 at equal epochs (docs/scaling.md).
    """

    TARGETS_PER_DRAW = 64

    def __init__(self, item_counts: np.ndarray, negatives: int, uniform: bool = False) -> None:
        frequency = np.asarray(item_counts, dtype=np.float64)
        counts = torch.as_tensor(np.ones_like(frequency) if uniform else frequency + 1.0)
        counts[PAD] = 0.0
        self.probs = (counts / counts.sum()).float()  # (N + 1,) Q, zero for padding
        self.log_expected = torch.log(negatives * self.probs)  # (N + 1,) -inf for padding
        self.negatives = negatives

    def __call__(self, hidden: Tensor, weights: Tensor, targets: Tensor) -> Tensor:
        if self.probs.device != hidden.device:
            self.probs = self.probs.to(hidden.device)
            self.log_expected = self.log_expected.to(hidden.device)
        count, size = hidden.size(0), self.TARGETS_PER_DRAW
        blocks = -(-count // size)
        sampled = torch.multinomial(self.probs, blocks * self.negatives, replacement=True)
        sampled = sampled.view(blocks, self.negatives)  # (G, S)
        negative, real = _block_scores(hidden, weights, targets, sampled, size)
        negative = negative - self.log_expected[sampled][:, None, :]  # (G, size, S)
        negative = negative.masked_fill(~real, -torch.inf).flatten(0, 1)[:count]  # (T, S)
        positive = (hidden * weights[targets]).sum(-1).float()  # (T,) in every row as it is
        logits = torch.cat([positive[:, None], negative], dim=1)  # (T, 1 + S)
        return F.cross_entropy(logits, torch.zeros_like(targets))


class GBCE:
    """gSASRec's generalised binary cross-entropy (Petrov & Macdonald, RecSys 2023).

    Binary cross-entropy of the target against S uniformly sampled negatives, with the
    positive's probability raised to the power
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha), alpha = S / (N - 1) the sampling
    rate: t = 0 is plain BCE, t = 1 fully counteracts the overconfidence that negative
    sampling induces. As in gSASRec the loss is the mean over the 1 + S terms per target;
    a negative equal to its row's target counts as neither.

    Every score enters the sigmoid shifted by the prior logit -log N: p(item) =
    sigmoid(h . e - log N), so an untrained model says "1 in N" for each item instead of
    sigmoid(0) = 1/2. The shift changes no ranking, but without it the first steps are
    spent pushing every item down at once: the S negatives' gradients all point along one
    shared direction of the item table, which with tied tables reaches the input
    embeddings too, and the model settles on item popularity (ML-100K SASRec: validation
    NDCG@10 flat at 0.018 for 28 epochs, exact CE 0.05 by epoch 10). On the synthetic task
    of ``benchmarks/loss_toy.py`` the shift alone takes gBCE from popularity to the exact
    answer, tied or untied (tests/training/test_loss.py).

    gSASRec draws negatives for every target. Here each block of ``self.block``
    consecutive targets (neighbouring positions of one sequence) shares a draw: one
    (blocks, S, D) gather and a batched product instead of a (T, S, D) gather. A block is
    ``TARGETS_PER_DRAW`` = 8 targets up to S = 256 and grows with S beyond (32 at
    S = 1024), so that a step gathers no more rows than at S = 256. One draw for the
    whole batch does not work for BCE: every target then pushes away the same S items and
    the model learns to score everything low.
    """

    TARGETS_PER_DRAW = 8

    def __init__(self, num_items: int, negatives: int, t: float, prior_shift: bool = True) -> None:
        alpha = negatives / max(num_items - 1, 1)
        self.beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
        self.offset = -math.log(max(num_items, 1)) if prior_shift else 0.0  # 1 in N
        self.num_items = num_items
        self.negatives = negatives
        self.block = self.TARGETS_PER_DRAW * -(-negatives // 256)  # targets per draw

    def __call__(self, hidden: Tensor, weights: Tensor, targets: Tensor) -> Tensor:
        count = hidden.size(0)
        blocks = -(-count // self.block)
        sampled = torch.randint(
            1, self.num_items + 1, (blocks, self.negatives), device=hidden.device
        )  # (G, S)
        negative, real = _block_scores(hidden, weights, targets, sampled, self.block)
        negative = negative + self.offset  # (G, size, S)
        positive = (hidden * weights[targets]).sum(-1).float() + self.offset  # (T,)
        # log sigma(s)^beta = beta * log sigma(s); log(1 - sigma(s)) = log sigma(-s)
        total = -self.beta * F.logsigmoid(positive).sum()
        total = total - torch.where(real, F.logsigmoid(-negative), 0.0).sum()
        return total / max(count * (1 + self.negatives), 1)


def train_item_counts(data: SequenceData) -> np.ndarray:
    """(N + 1,) occurrences of each item in the training split (what negative samplers see):
    every interaction minus the validation and test targets."""
    size = data.num_items + 1
    counts = np.bincount(data.items, minlength=size)
    for split in ("valid", "test"):
        counts -= np.bincount(data.split(split).targets, minlength=size)  # type: ignore[arg-type]
    return counts


def make_loss(config: TrainConfig, item_counts: np.ndarray) -> LossFn:
    """The loss named by ``config.loss``; ``item_counts`` (N + 1,) are the training
    frequencies of the items (index 0 = padding), used by the popularity sampler."""
    if config.loss in LOSSES:
        return LOSSES[config.loss]
    if config.loss == "sampled_softmax":
        return SampledSoftmaxCE(item_counts, config.negatives, config.sampler == "uniform")
    if config.loss == "gbce":
        return GBCE(len(item_counts) - 1, config.negatives, config.gbce_t)
    raise ValueError(f"unknown loss {config.loss!r}")  # TrainConfig rejects it first
