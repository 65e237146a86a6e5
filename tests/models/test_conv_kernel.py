"""The Mamba mixer's convolution and SiLU as one C kernel (hymoerec.models.conv_kernel)
against the unfused operators in float64, and inside the model."""

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hymoerec import kernels
from hymoerec.models import conv_kernel
from tests.models.tiny import count_calls, same_model_either_way


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    saved = dict(conv_kernel._state)
    yield
    conv_kernel._state.update(saved)


def reference(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """The unfused mixer code, in float64."""
    w, b = conv.weight.double(), conv.bias.double()
    out = F.conv1d(x.double().transpose(1, 2), w, b, padding=w.size(-1) - 1, groups=w.size(0))
    return F.silu(out[..., : x.size(1)]).transpose(1, 2)


@pytest.mark.parametrize("length", [1, 2, 3, 17])
def test_kernel_matches_the_unfused_operators_and_their_gradients(length: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3)
    projection = torch.randn(3, length, 12)
    x = projection[..., :6]  # strided, as in_proj's split leaves it
    grad = torch.randn(3, length, 6)
    leaf = x.detach().double().requires_grad_()
    weight = conv.weight.detach().double().requires_grad_()
    bias = conv.bias.detach().double().requires_grad_()
    double = nn.Conv1d(6, 6, 4, groups=6, padding=3).double()
    double.weight, double.bias = nn.Parameter(weight), nn.Parameter(bias)
    expected = reference(leaf, double)
    expected.backward(grad.double())
    inputs = x.detach().requires_grad_()
    actual = conv_kernel.ConvSilu.apply(inputs, conv.weight, conv.bias)
    actual.backward(grad)
    torch.testing.assert_close(actual.double(), expected, atol=1e-6, rtol=1e-5)
    for name, a, e in [
        ("x", inputs.grad, leaf.grad),
        ("weight", conv.weight.grad, double.weight.grad),
        ("bias", conv.bias.grad, double.bias.grad),
    ]:
        torch.testing.assert_close(a.double(), e, atol=1e-5, rtol=1e-5, msg=f"gradient of {name}")


def test_bfloat16_input_gives_the_float32_result_rounded() -> None:
    torch.manual_seed(1)
    conv = nn.Conv1d(8, 8, 4, groups=8, padding=3)
    x = torch.randn(2, 9, 8).bfloat16()
    actual = conv_kernel.ConvSilu.apply(x, conv.weight, conv.bias)
    assert actual.dtype == torch.bfloat16
    expected = conv_kernel.ConvSilu.apply(x.float(), conv.weight, conv.bias)
    torch.testing.assert_close(actual, expected.bfloat16(), atol=0, rtol=0)


def test_the_mixer_gives_the_same_output_and_gradients_with_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same_model_either_way(kernels.use, count_calls(monkeypatch, conv_kernel.ConvSilu, "apply"))
