"""The bf16 cross-entropy kernel (hymoerec.training.ce_kernel): likelihoods and both
gradients against float64 on the same bf16 inputs, blocks and item tiles that do not
divide the sizes, threads, what it refuses, and the loss through it against the chunked
bf16 products."""

from collections.abc import Iterator

import pytest
import torch

from hymoerec import kernels
from hymoerec.training import ce_kernel
from hymoerec.training import loss as losses


def runs_here() -> bool:
    try:
        return bool(ce_kernel.library().ce_available())
    except kernels.KernelUnavailable:
        return False


pytestmark = pytest.mark.skipif(not runs_here(), reason="needs a C compiler and AVX-512 BF16")


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    saved = dict(ce_kernel._state)
    yield
    ce_kernel._state.update(saved)


def inputs(rows: int, items: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=g).bfloat16()
    table = (0.3 * torch.randn(items + 1, dim, generator=g)).bfloat16()
    return hidden, table, torch.randint(1, items + 1, (rows,), generator=g)


def reference(hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor) -> tuple:
    """float64: -log p(target), sum_n p W[n] per row, sum_t p h[t] per item; p over 1..N."""
    h, w = hidden.double(), table.double()
    logits = h @ w.T
    logits[:, 0] = -torch.inf
    log_p = logits.log_softmax(dim=1)
    p = log_p.exp()
    return -log_p[torch.arange(targets.numel()), targets], p @ w, p.T @ h


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm())


@pytest.mark.parametrize(
    ("rows", "items", "dim", "threads"),
    [(101, 203, 64, 2), (48, 47, 64, 1), (7, 500, 128, 2), (250, 1000, 64, 3)],
)
def test_likelihoods_and_gradients_match_float64(rows, items, dim, threads) -> None:
    # rows and items off the kernel's blocks of 48, a hidden size of two tiles, and more
    # threads than cores
    hidden, table, targets = inputs(rows, items, dim)
    want_nll, want_grad_h, want_grad_w = reference(hidden, table, targets)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        nll, grad_h, grad_w = ce_kernel.fused_ce(hidden, table, targets)
    finally:
        torch.set_num_threads(previous)
    assert nll.dtype == torch.float64 and grad_h.dtype == grad_w.dtype == torch.float32
    assert grad_h.shape == hidden.shape and grad_w.shape == table.shape
    # the logits stay float32 in the kernel: the likelihoods are float32-exact
    torch.testing.assert_close(nll, want_nll, rtol=1e-5, atol=1e-5)
    # the probabilities are rounded to bf16 (2^-9 relative) before both products
    assert relative(grad_h, want_grad_h) < 4e-3
    assert relative(grad_w, want_grad_w) < 4e-3
    assert (grad_w[0] == 0).all()  # the padding item has probability 0


def test_gradients_sum_to_what_the_probabilities_sum_to() -> None:
    # sum_n p[t, n] = 1 per row: with a table of equal rows, grad_h[t] is that row
    hidden, _table, targets = inputs(60, 300, 64)
    row = torch.randn(64).bfloat16()
    table = row.expand(301, 64).contiguous()
    _nll, grad_h, grad_w = ce_kernel.fused_ce(hidden, table, targets)
    torch.testing.assert_close(grad_h, row.float().expand(60, 64), rtol=1e-2, atol=1e-2)
    # and the items' rows of grad_w add up to the sum of the hidden states
    torch.testing.assert_close(grad_w.sum(0), hidden.float().sum(0), rtol=1e-2, atol=0.1)


def test_a_target_far_below_the_rest_keeps_a_finite_likelihood() -> None:
    hidden = torch.zeros(1, 64, dtype=torch.bfloat16)
    hidden[0, 0] = 1.0
    table = torch.zeros(3, 64, dtype=torch.bfloat16)
    table[1, 0], table[2, 0] = 200.0, -200.0  # logit -200 against 200: p underflows
    nll, _grad_h, _grad_w = ce_kernel.fused_ce(hidden, table, torch.tensor([2]))
    assert float(nll[0]) == pytest.approx(400.0)


def test_what_the_kernel_refuses() -> None:
    hidden, table, _targets = inputs(10, 50, 64)
    with kernels.use(True):
        assert ce_kernel.fits(hidden, table)
        assert not ce_kernel.fits(hidden.float(), table.float())  # float32: the products
        assert not ce_kernel.fits(hidden[:, :32], table[:, :32])  # not a multiple of 64
        assert not ce_kernel.fits(hidden, table[:1])  # no item but the padding
    assert not ce_kernel.fits(hidden, table)  # native kernels off


def test_the_bf16_loss_through_the_kernel_is_the_chunked_one(monkeypatch) -> None:
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(300, 64, generator=g, requires_grad=True)
    weights = (0.3 * torch.randn(401, 64, generator=g)).requires_grad_()
    targets = torch.randint(1, 401, (300,), generator=g)
    calls = []
    fused = ce_kernel.fused_ce
    monkeypatch.setattr(ce_kernel, "fused_ce", lambda *a: calls.append(1) or fused(*a))
    results = {}
    for native in (False, True):
        with kernels.use(native), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = losses.chunked_softmax_ce(hidden, weights, targets, chunk=128)
        results[native] = (loss, *torch.autograd.grad(loss, [hidden, weights]))
    assert len(calls) == 1  # the kernel ran with native kernels on, only then
    chunked, through_kernel = results[False], results[True]
    # the chunked path also rounds the logits to bf16: the loss within 1e-3 relative
    assert float(through_kernel[0].detach()) == pytest.approx(float(chunked[0].detach()), rel=1e-3)
    for got, want in zip(through_kernel[1:], chunked[1:], strict=True):
        assert got.dtype == torch.float32
        assert relative(got, want.double()) < 1e-2


def test_a_target_outside_the_items_is_refused_before_the_kernel_reads_it() -> None:
    hidden, table, targets = inputs(10, 50, 64)
    for bad in (0, 51, -1):  # the padding item, past the table, negative
        wrong = targets.clone()
        wrong[3] = bad
        with pytest.raises(IndexError, match=r"items 1\.\.50"):
            ce_kernel.fused_ce(hidden, table, wrong)
    with pytest.raises(ValueError, match="10 targets"):
        ce_kernel.fused_ce(hidden, table, targets[:9])


def test_where_it_cannot_be_built_the_chunked_products_run(monkeypatch) -> None:
    hidden, table, _targets = inputs(10, 50, 64)

    def unavailable() -> None:
        raise kernels.KernelUnavailable("no compiler here")

    monkeypatch.setattr(ce_kernel, "library", unavailable)
    with kernels.use(True), pytest.warns(RuntimeWarning, match="no compiler here"):
        assert not ce_kernel.fits(hidden, table)
    with kernels.use(True):
        assert not ce_kernel.fits(hidden, table)  # warned once, then quietly off


def test_a_library_built_without_avx512_bf16_is_not_used(monkeypatch) -> None:
    hidden, table, targets = inputs(40, 50, 64)

    class WithoutBf16:
        def ce_available(self) -> int:
            return 0

    monkeypatch.setattr(ce_kernel, "library", WithoutBf16)
    weights = table.float().requires_grad_()
    with kernels.use(True), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not ce_kernel.fits(hidden, table)
        loss = losses.chunked_softmax_ce(hidden.float(), weights, targets)
    assert torch.isfinite(loss) and ce_kernel._state["failed"]
