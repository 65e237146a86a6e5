"""The chunked cross-entropy's softmax kernel (hymoerec.training.softmax_kernel): the
softmax over items 1..N and each target's negative log-likelihood against float64,
bf16 rounding, likelihoods too small for a probability, threads, and the loss through it."""

from collections.abc import Iterator

import pytest
import torch

from hymoerec import kernels
from hymoerec.training import loss as losses
from hymoerec.training import softmax_kernel
from hymoerec.training.softmax_kernel import native_softmax_nll, softmax_nll


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    saved = dict(softmax_kernel._state)
    yield
    softmax_kernel._state.update(saved)


def logits_and_targets(rows: int = 37, items: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    logits = 4 * torch.randn(rows, items + 1, generator=g)
    return logits, torch.randint(1, items + 1, (rows,), generator=g)


def reference(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 softmax over columns 1..N (column 0 at 0) and -log p(target)."""
    x = logits.double()
    x[:, 0] = -torch.inf
    log_probs = x.log_softmax(dim=1)
    rows = torch.arange(targets.numel())
    return log_probs.exp(), -log_probs[rows, targets]


def test_probabilities_and_likelihoods_match_float64() -> None:
    logits, targets = logits_and_targets()
    want_probs, want_nll = reference(logits, targets)
    nll = native_softmax_nll(logits, targets)  # logits now hold the probabilities
    assert logits.dtype == torch.float32 and (logits[:, 0] == 0).all()
    torch.testing.assert_close(logits.double(), want_probs, rtol=1e-6, atol=1e-9)
    ones = torch.ones(37, dtype=torch.float64)
    torch.testing.assert_close(logits.double().sum(dim=1), ones, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(nll, want_nll, rtol=1e-6, atol=1e-6)


def test_bf16_probabilities_are_the_exact_ones_rounded() -> None:
    logits, targets = logits_and_targets()
    logits = logits.bfloat16()
    want_probs, want_nll = reference(logits.float(), targets)
    nll = native_softmax_nll(logits, targets)
    assert logits.dtype == torch.bfloat16
    # within one bf16 rounding (2^-8 relative) of the float64 values
    torch.testing.assert_close(logits.double(), want_probs, rtol=2**-8, atol=1e-30)
    torch.testing.assert_close(nll, want_nll, rtol=1e-6, atol=1e-6)


def test_a_target_far_below_the_rest_keeps_a_finite_likelihood() -> None:
    logits, targets = logits_and_targets(rows=3)
    logits[1, targets[1]] = -300.0  # p = e^-300: no float32 or bf16 probability holds it
    want = reference(logits, targets)[1]
    for dtype in (torch.float32, torch.bfloat16):
        nll = native_softmax_nll(logits.clone().to(dtype), targets)
        assert torch.isfinite(nll).all() and nll[1] > 300
        torch.testing.assert_close(nll[1], want[1].to(nll.dtype), rtol=1e-3, atol=0.0)


def test_likelihoods_of_the_first_rows_only_and_every_row_normalised() -> None:
    logits, targets = logits_and_targets(rows=8)
    want_probs, want_nll = reference(logits, targets)
    nll = native_softmax_nll(logits, targets[:5])
    assert nll.shape == (5,)
    torch.testing.assert_close(nll, want_nll[:5], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits.double(), want_probs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_thread_count_gives_the_same_result(threads: int) -> None:
    logits, targets = logits_and_targets()
    one = logits.clone()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = native_softmax_nll(one, targets)
        torch.set_num_threads(threads)
        got = native_softmax_nll(logits, targets)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, want) and torch.equal(logits, one)


def test_torchs_softmax_outside_the_switch_gives_the_same_result() -> None:
    logits, targets = logits_and_targets()
    with kernels.use(False):
        probs, nll = softmax_nll(logits.clone(), targets[:30])
    with kernels.use(True):
        native_probs, native_nll = softmax_nll(logits.clone(), targets[:30])
    torch.testing.assert_close(native_probs, probs, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(native_nll, nll, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_chunked_loss_through_the_kernel_is_the_exact_loss(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(70, 16, generator=g, requires_grad=True)
    weights = torch.randn(41, 16, generator=g, requires_grad=True)
    targets = torch.randint(1, 41, (70,), generator=g)
    results = []
    for on in (False, True):
        with kernels.use(on), torch.autocast("cpu", torch.bfloat16, enabled=dtype != torch.float32):
            loss = losses.chunked_softmax_ce(hidden, weights, targets, chunk=32)
        results.append((loss, *torch.autograd.grad(loss, [hidden, weights])))
    # bf16: the two softmaxes may round a probability differently (one bf16 step)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 0.0, "atol": 2e-3}
    )
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, **tolerance)
