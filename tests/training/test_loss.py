import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hymoerec.config import ConfigError, TrainConfig
from hymoerec.training import loss as losses
from hymoerec.training.loss import GBCE, SampledSoftmaxCE, make_loss


def example(num_items: int = 30, targets: int = 40) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(targets, 8, generator=g, requires_grad=True)
    weights = torch.randn(num_items + 1, 8, generator=g, requires_grad=True)
    return hidden, weights, torch.randint(1, num_items + 1, (targets,), generator=g)


def test_chunk_shrinks_on_large_catalogues_with_the_same_loss_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hidden, weights, targets = example()
    want = losses.full_softmax_ce(hidden, weights, targets)
    want_grads = torch.autograd.grad(want, [hidden, weights])
    seen: list[int] = []
    original = losses._ChunkedSoftmaxCE.apply

    def spy(
        h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, chunk: int, dtype: torch.dtype
    ) -> torch.Tensor:
        seen.append(chunk)
        return original(h, w, y, chunk, dtype)  # type: ignore[no-any-return]

    monkeypatch.setattr(losses._ChunkedSoftmaxCE, "apply", spy)
    monkeypatch.setattr(losses, "MAX_CHUNK_LOGITS", 31 * 3)  # 31 rows of logits: 3 targets
    got = losses.chunked_softmax_ce(hidden, weights, targets)
    assert seen == [3]
    torch.testing.assert_close(got, want)
    for g, w in zip(torch.autograd.grad(got, [hidden, weights]), want_grads, strict=True):
        torch.testing.assert_close(g, w)


def test_a_short_last_chunk_is_padded_without_changing_the_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hidden, weights, targets = example(targets=37)  # chunks of 16: 16, 16 and 5 targets
    want = losses.full_softmax_ce(hidden, weights, targets)
    want_grads = torch.autograd.grad(want, [hidden, weights])
    rows: list[int] = []
    original = losses.padded_rows
    monkeypatch.setattr(losses, "CHUNK_ROWS", 4)
    monkeypatch.setattr(
        losses, "padded_rows", lambda h, m: rows.append(original(h, m).size(0)) or original(h, m)
    )
    got = losses.chunked_softmax_ce(hidden, weights, targets, chunk=16)
    assert rows == [16, 16, 8]
    torch.testing.assert_close(got, want)
    for g, w in zip(torch.autograd.grad(got, [hidden, weights]), want_grads, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("size", [64, 16])  # one block; three, the last part-filled
def test_sampled_softmax_is_the_logq_corrected_softmax_over_its_draws(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SampledSoftmaxCE, "TARGETS_PER_DRAW", size)
    hidden, weights, targets = example()
    counts = np.arange(31) * 3
    counts[0] = 0
    loss = SampledSoftmaxCE(counts, negatives=20)
    torch.manual_seed(1)
    got = loss(hidden, weights, targets)
    torch.manual_seed(1)
    q = torch.as_tensor(counts + 1.0).float()
    q[0] = 0
    q = q / q.sum()
    blocks = -(-len(targets) // size)
    drawn = torch.multinomial(q, blocks * 20, replacement=True).view(blocks, 20)
    assert drawn.ne(0).all()  # padding is never a negative
    want = 0.0
    for row, (h, y) in enumerate(zip(hidden, targets, strict=True)):
        logits = [h @ weights[y]]  # the target is not drawn: no correction
        logits += [h @ weights[i] - math.log(20 * q[i]) for i in drawn[row // size] if i != y]
        want += -F.log_softmax(torch.stack(logits), 0)[0]
    torch.testing.assert_close(got, want / len(targets))


@pytest.mark.parametrize("uniform", [True, False])
def test_sampled_softmax_with_every_item_drawn_tends_to_the_exact_loss(uniform: bool) -> None:
    """The corrected negatives estimate the denominator's sum over the other items without
    bias, for any Q: with many draws the loss is exact CE's."""
    hidden, weights, targets = example(num_items=30)
    counts = np.arange(31.0) ** 2  # a skewed Q when not uniform
    loss = SampledSoftmaxCE(counts, negatives=200_000, uniform=uniform)
    torch.manual_seed(0)
    exact = losses.full_softmax_ce(hidden, weights, targets)
    got = float(loss(hidden, weights, targets).detach())
    assert got == pytest.approx(float(exact.detach()), abs=0.02)


def test_uniform_sampler_ignores_popularity() -> None:
    hidden, weights, targets = example()
    skewed = np.arange(31) ** 3
    uniform = SampledSoftmaxCE(skewed, negatives=50, uniform=True)
    assert uniform.probs[0] == 0
    torch.testing.assert_close(uniform.probs[1:], torch.full((30,), 1 / 30))
    torch.manual_seed(3)
    got = uniform(hidden, weights, targets)
    torch.manual_seed(3)
    want = SampledSoftmaxCE(np.zeros(31), negatives=50)(hidden, weights, targets)
    torch.testing.assert_close(got, want)
    torch.manual_seed(3)
    assert not torch.allclose(
        SampledSoftmaxCE(skewed, negatives=50)(hidden, weights, targets), want
    )
    drawn = make_loss(TrainConfig(loss="sampled_softmax"), skewed)  # uniform by default
    assert isinstance(drawn, SampledSoftmaxCE)
    torch.testing.assert_close(drawn.probs, uniform.probs)
    popular = make_loss(TrainConfig(loss="sampled_softmax", sampler="popularity"), skewed)
    assert isinstance(popular, SampledSoftmaxCE)
    assert popular.probs[30] > 100 * popular.probs[1]  # Q follows the counts
    with pytest.raises(ConfigError, match=r"train\.sampler='zipf'"):
        TrainConfig(sampler="zipf")


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_gbce_matches_its_definition(t: float) -> None:
    hidden, weights, targets = example(num_items=30, targets=37)  # last block part-filled
    loss = GBCE(num_items=30, negatives=10, t=t)
    alpha = 10 / 29
    assert loss.beta == pytest.approx(alpha * (t * (1 - 1 / alpha) + 1 / alpha))
    assert loss.beta == pytest.approx({0.0: 1.0, 1.0: alpha}.get(t, loss.beta))
    torch.manual_seed(2)
    got = loss(hidden, weights, targets)
    torch.manual_seed(2)
    assert loss.block == GBCE.TARGETS_PER_DRAW == 8
    assert GBCE(num_items=3000, negatives=1024, t=t).block == 32  # grows with S past 256
    blocks = -(-len(targets) // GBCE.TARGETS_PER_DRAW)
    drawn = torch.randint(1, 31, (blocks, 10))  # one draw per block of consecutive targets
    total = 0.0
    prior = -math.log(30)  # every score shifted by the prior logit, 1 in N
    with torch.no_grad():
        for row, (h, y) in enumerate(zip(hidden, targets, strict=True)):
            negatives = drawn[row // GBCE.TARGETS_PER_DRAW]
            total += -math.log(torch.sigmoid(h @ weights[y] + prior) ** loss.beta)
            total += sum(
                -math.log(1 - torch.sigmoid(h @ weights[i] + prior)) for i in negatives if i != y
            )
    assert float(got.detach()) == pytest.approx(total / (len(targets) * 11), rel=1e-5)


def test_make_loss_and_config_options() -> None:
    counts = np.ones(31)
    assert make_loss(TrainConfig(loss="ce"), counts) is losses.full_softmax_ce
    assert isinstance(make_loss(TrainConfig(loss="sampled_softmax"), counts), SampledSoftmaxCE)
    assert isinstance(make_loss(TrainConfig(loss="gbce", negatives=5), counts), GBCE)
    with pytest.raises(ConfigError, match=r"train\.loss"):
        TrainConfig(loss="bpr")
    with pytest.raises(ConfigError, match=r"train\.gbce_t"):
        TrainConfig(gbce_t=1.5)
    with pytest.raises(ConfigError, match=r"train\.negatives"):
        TrainConfig(negatives=0)


@pytest.mark.parametrize("scale", [0.02, 0.3])
def test_chunked_ce_under_bf16_autocast_is_the_float32_loss_up_to_bf16_rounding(
    scale: float,
) -> None:
    g = torch.Generator().manual_seed(0)
    # hidden states of LayerNorm scale, an item table from fresh (0.02) to trained (0.3)
    hidden = torch.randn(700, 64, generator=g, requires_grad=True)
    weights = (torch.randn(501, 64, generator=g) * scale).requires_grad_()
    targets = torch.randint(1, 501, (700,), generator=g)
    want = losses.full_softmax_ce(hidden, weights, targets)
    want_grads = torch.autograd.grad(want, [hidden, weights])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert losses.matmul_dtype(hidden) == torch.bfloat16
        got = losses.chunked_softmax_ce(hidden, weights, targets, chunk=128)
    got_grads = torch.autograd.grad(got, [hidden, weights])
    assert got.dtype == torch.float32
    # measured: loss within 8e-6 relative, gradients within 0.4% (relative norm)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-4)
    for g_got, g_want in zip(got_grads, want_grads, strict=True):
        assert g_got.dtype == torch.float32
        error = float((g_got - g_want).norm() / g_want.norm())
        assert 0 < error < 1e-2  # nonzero: the products did run in bfloat16


def test_chunked_ce_survives_a_target_probability_that_underflows() -> None:
    hidden = torch.tensor([[1.0, 0.0]], requires_grad=True)
    weights = torch.tensor([[0.0, 0.0], [200.0, 0.0], [-200.0, 0.0]], requires_grad=True)
    targets = torch.tensor([2])  # logit -200 against 200: -log p = 400, p underflows
    got = losses.chunked_softmax_ce(hidden, weights, targets)
    assert float(got.detach()) == pytest.approx(400.0)
    torch.testing.assert_close(got, losses.full_softmax_ce(hidden, weights, targets))


def load_toy() -> Any:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "loss_toy.py"
    spec = importlib.util.spec_from_file_location("loss_toy", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gbce_learns_what_exact_ce_learns_once_its_scores_start_at_the_prior() -> None:
    # the synthetic next-item task of benchmarks/loss_toy.py, tied item table as the models
    toy = load_toy()
    task = toy.make_task(300)
    named = toy.losses(task, negatives=64)
    popularity = toy.popularity_recall(task)
    got = {name: toy.recall(task, True, named[name], 600, 256, 32) for name in named}
    assert got["ce"] > popularity + 0.3  # the task is learnable
    assert got["gbce"] >= 0.9 * got["ce"]
    # without the shift of every score by -log N, gBCE learns item popularity only
    assert got["gbce_no_prior_shift"] == pytest.approx(popularity, abs=0.02)
