"""The fused GELU and dropout of the point-wise FFN (hymoerec.models.ffn_kernel): exact
GELU and its derivative on the kept elements, the share kept and its scale, seeding, and
the switch that routes the FFN through it."""

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from hymoerec.config import TrainConfig
from hymoerec.models import ffn_kernel
from hymoerec.models.layers import Dropout, PointWiseFFN
from hymoerec.training.validation import numerics
from tests.models.tiny import count_calls


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    saved = dict(ffn_kernel._state)
    yield
    ffn_kernel._state.update(saved)


def sample(count: int = 200_000, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = 3 * torch.randn(count, generator=g)
    x[x == 0] = 1.0  # gelu(0) = 0 would read as dropped
    return x.to(dtype)


def test_forward_is_gelu_on_the_kept_elements_scaled_by_the_exact_inverse() -> None:
    x, p = sample(), 0.2
    y = ffn_kernel.GeluDropout.apply(x, p)
    kept = y != 0
    drop = round(p * 2**32)
    scale = 2**32 / (2**32 - drop)
    expected = F.gelu(x.double()) * kept * scale
    torch.testing.assert_close(y.double(), expected, atol=2e-6, rtol=2e-6)
    share = kept.double().mean().item()
    assert abs(share - (1 - p)) < 5 * (p * (1 - p) / x.numel()) ** 0.5  # five sd
    neighbours = torch.corrcoef(torch.stack([kept[:-1].double(), kept[1:].double()]))[0, 1]
    assert abs(float(neighbours)) < 0.01  # the hash of consecutive indices is not a pattern


def test_backward_is_the_gelu_derivative_on_the_same_mask() -> None:
    x = sample().requires_grad_()
    y = ffn_kernel.GeluDropout.apply(x, 0.3)
    grad = torch.randn_like(y)
    y.backward(grad)
    mask = (y != 0).double() / (1 - round(0.3 * 2**32) / 2**32)
    reference = x.detach().double().requires_grad_()
    (F.gelu(reference) * mask).backward(grad.double())
    torch.testing.assert_close(x.grad.double(), reference.grad, atol=2e-6, rtol=2e-6)


def test_the_mask_follows_torchs_seed_and_changes_from_call_to_call() -> None:
    x = sample(50_000)
    torch.manual_seed(7)
    first, second = (ffn_kernel.GeluDropout.apply(x, 0.5) != 0 for _ in range(2))
    torch.manual_seed(7)
    assert torch.equal(ffn_kernel.GeluDropout.apply(x, 0.5) != 0, first)
    agree = (first == second).double().mean().item()
    assert abs(agree - 0.5) < 0.02  # independent masks agree half the time at p = 0.5


def test_bfloat16_gives_the_float32_result_rounded() -> None:
    x = sample(20_000)
    torch.manual_seed(1)
    y32 = ffn_kernel.GeluDropout.apply(x.bfloat16().float(), 0.2)
    torch.manual_seed(1)
    y16 = ffn_kernel.GeluDropout.apply(x.bfloat16(), 0.2)
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16, y32.bfloat16(), atol=0, rtol=0)


def test_the_ffn_uses_the_kernel_in_training_with_the_switch_on_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_calls(monkeypatch, ffn_kernel.GeluDropout, "apply")
    ffn = PointWiseFFN(8, 32, 0.2)
    x = torch.randn(4, 5, 8)
    ffn(x)
    assert not calls  # off by default
    with numerics(TrainConfig(native_kernels=True), torch.device("cpu")):
        ffn(x).sum().backward()
        assert calls
        calls.clear()
        ffn.eval()
        torch.testing.assert_close(ffn(x), ffn.w_2(F.gelu(ffn.w_1(x))))  # no dropout
        ffn.train()
        ffn.dropout.p = 0.0
        ffn(x)
    assert not calls
    with numerics(TrainConfig(native_kernels=False), torch.device("cpu")):
        ffn.dropout.p = 0.2
        ffn(x)
    assert not calls


def test_unfused_fallback_uses_the_layers_dropout() -> None:
    x = torch.randn(1000)
    dropout = Dropout(0.25)
    torch.manual_seed(0)
    out = ffn_kernel.gelu_dropout(x, 0.25, True, dropout)  # switch off: unfused
    torch.manual_seed(0)
    torch.testing.assert_close(out, dropout(F.gelu(x)))
