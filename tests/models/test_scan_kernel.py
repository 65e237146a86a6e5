"""The training scan's C kernel (hymoerec.models.scan_kernel) against the step-by-step
recurrence, on any thread count and any strides, and inside the model."""

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from hymoerec.models import build_model, scan, scan_kernel
from hymoerec.models.mamba import SelectiveScan
from hymoerec.models.scan_kernel import NativeMixer, native_mixer, native_scan
from tests.models.test_mamba import recurrence, scan_inputs
from tests.models.tiny import count_calls, same_model_either_way


@pytest.fixture(autouse=True)
def fresh_scan_state() -> Iterator[None]:
    saved = dict(scan._state)
    yield
    scan._state.update(saved)


@pytest.fixture
def threads() -> Iterator[None]:
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def strided(u: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> list[torch.Tensor]:
    """u as the mixer has it (a transposed convolution output) and B, C as slices of one
    projection, as ``Mamba.forward`` passes them in float32."""
    u = u.transpose(1, 2).contiguous().transpose(1, 2)
    projection = torch.cat([torch.randn(*B.shape[:2], 2), B, C], dim=-1)
    n = B.size(-1)
    return [u, projection[..., 2 : 2 + n], projection[..., 2 + n :]]


@pytest.mark.parametrize("length", [1, 2, 33])
@pytest.mark.parametrize("d_state", [5, 32])
def test_kernel_matches_the_recurrence_and_its_gradients(length: int, d_state: int) -> None:
    u, delta, A, B, C = scan_inputs(batch=3, length=length, d_inner=3, d_state=d_state)
    u, B, C = strided(u, B, C)
    assert not B.is_contiguous() and (length == 1 or not u.is_contiguous())
    leaves = [t.double().detach().requires_grad_() for t in (u, delta, A, B, C)]
    weight = torch.randn(3, length, 3, dtype=torch.float64)
    expected = recurrence(*leaves)
    expected_grads = torch.autograd.grad((expected * weight).sum(), leaves)
    inputs = [t.detach().requires_grad_() for t in (u, delta, A, B, C)]
    actual = native_scan(*inputs)
    torch.testing.assert_close(actual.double(), expected, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad((actual * weight.float()).sum(), inputs)
    for name, a, e in zip(["u", "delta", "A", "B", "C"], grads, expected_grads, strict=True):
        torch.testing.assert_close(a.double(), e, atol=1e-4, rtol=1e-5, msg=f"gradient of {name}")


def test_kernel_matches_the_float32_loop_on_a_training_batch_shape() -> None:
    """(32, 200) at d_inner 128 and N 32, ML-1M's shape, against SelectiveScan."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(32, 200, 128, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(32, 200, 128, generator=g) - 4)
    A = -torch.exp(torch.log(torch.arange(1.0, 33.0)).repeat(128, 1))  # Mamba's init
    B, C = torch.randn(32, 200, 32, generator=g), torch.randn(32, 200, 32, generator=g)
    grad_y = torch.randn(32, 200, 128, generator=g)
    results = []
    for scan_fn in (SelectiveScan.apply, native_scan):
        leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, C)]
        y = scan_fn(*leaves)
        y.backward(grad_y)
        results.append([y, *(t.grad for t in leaves)])
    for name, a, e in zip(["y", "u", "delta", "A", "B", "C"], results[1], results[0], strict=True):
        scale = e.abs().max()
        assert (a - e).abs().max() <= 1e-5 * scale, f"{name} differs"


def test_kernel_takes_float32_or_bfloat16_cpu_tensors_of_one_dtype_only() -> None:
    u, delta, A, B, C = scan_inputs()
    with pytest.raises(ValueError, match="float64"):
        NativeMixer.apply(u.double(), delta, None, A, B, C, None, None)
    with pytest.raises(ValueError, match="bfloat16"):
        NativeMixer.apply(u.bfloat16(), delta, None, A, B, C, None, None)


def test_the_model_trains_through_the_kernel_with_the_loops_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same_model_either_way(scan.use, count_calls(monkeypatch, NativeMixer, "apply"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_last_output_kernel_matches_the_recurrence_at_each_rows_last_position(
    dtype: torch.dtype, with_bias: bool
) -> None:
    u, delta, A, B, C = scan_inputs(batch=4, length=19, d_inner=5, d_state=6)
    projection = torch.cat([torch.randn(4, 19, 2), B, C], dim=-1).to(dtype)
    B16, C16 = projection[..., 2:8], projection[..., 8:]  # strided, read in place
    u16 = u.transpose(1, 2).contiguous().transpose(1, 2).to(dtype)
    bias = torch.randn(5) if with_bias else None
    raw = delta if bias is None else torch.log(torch.expm1(delta)) - bias  # softplus^-1
    raw16 = raw.to(dtype)
    last = torch.tensor([0, 7, 18, 3])
    rows = torch.arange(4)
    # the reference sees exactly the values the kernel reads
    step = raw16.float() if bias is None else F.softplus(raw16.float() + bias)
    expected = recurrence(u16.double(), step.double(), A.double(), B16.double(), C16.double())[
        rows, last
    ]
    actual = scan_kernel.native_last_output(u16, raw16, A, B16, C16[rows, last], last, bias)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, atol=1e-5, rtol=1e-5)
    u16[:, 19 - 1 :] = 1e3  # after every row's last position but the third
    changed = scan_kernel.native_last_output(u16, raw16, A, B16, C16[rows, last], last, bias)
    torch.testing.assert_close(changed[[0, 1, 3]], actual[[0, 1, 3]], atol=0, rtol=0)


def test_last_output_kernel_rejects_positions_outside_the_history() -> None:
    u, delta, A, B, C = scan_inputs(batch=2, length=5)
    with pytest.raises(IndexError, match="last positions"):
        scan_kernel.native_last_output(u, delta, A, B, C[:, 0], torch.tensor([0, 5]))


def test_ranking_goes_through_the_last_output_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_calls(monkeypatch, scan, "native_last_output")
    torch.manual_seed(0)
    model = build_model("hymoerec", {"hidden_size": 16, "d_state": 4}, 30).eval()
    items = torch.randint(1, 31, (3, 11))
    lengths = torch.tensor([11, 4, 1])
    items[1, 4:], items[2, 1:] = 0, 0
    plain = model.next_item_hidden(items, lengths)
    with scan.use(True):
        native = model.next_item_hidden(items, lengths)
    assert calls, "the kernel was not used"
    torch.testing.assert_close(native, plain, atol=1e-5, rtol=1e-4)


def mixer_reference(
    u: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
) -> torch.Tensor:
    """(scan(u, softplus(x + bias), A, B, C) + D u) * silu(z), step by step."""
    return (recurrence(u, F.softplus(x + bias), A, B, C) + D * u) * F.silu(z)


def mixer_inputs(length: int, d_state: int, d_inner: int = 3) -> list[torch.Tensor]:
    """u, x, bias, A, B, C, D, z with u, z halves of one projection and B, C slices of
    another (as ``Mamba.forward`` has them), x the step size before bias and softplus."""
    g = torch.Generator().manual_seed(2)
    u, _, A, B, C = scan_inputs(batch=3, length=length, d_inner=d_inner, d_state=d_state)
    u, z = torch.cat([u, torch.randn(3, length, d_inner, generator=g)], dim=-1).chunk(2, -1)
    _, B, C = strided(u, B, C)
    x = torch.randn(3, length, d_inner, generator=g)
    bias, D = torch.randn(d_inner, generator=g) - 2, torch.randn(d_inner, generator=g)
    return [u, x, bias, A, B, C, D, z]


NAMES = ["u", "x", "bias", "A", "B", "C", "D", "z"]


@pytest.mark.parametrize("length", [1, 2, 33])
@pytest.mark.parametrize("d_state", [5, 32])
@pytest.mark.parametrize("d_inner", [3, 37])  # one block of channels; three, the last part-filled
def test_mixer_matches_its_composition_and_gradients(
    length: int, d_state: int, d_inner: int
) -> None:
    inputs = mixer_inputs(length, d_state, d_inner)
    assert not inputs[0].is_contiguous() and not inputs[4].is_contiguous()
    leaves = [t.double().detach().requires_grad_() for t in inputs]
    weight = torch.randn(3, length, d_inner, dtype=torch.float64)
    expected = mixer_reference(*leaves)
    expected_grads = torch.autograd.grad((expected * weight).sum(), leaves)
    leaves = [t.detach().requires_grad_() for t in inputs]
    actual = native_mixer(*leaves)
    torch.testing.assert_close(actual.double(), expected, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad((actual * weight.float()).sum(), leaves)
    for name, a, e in zip(NAMES, grads, expected_grads, strict=True):
        torch.testing.assert_close(a.double(), e, atol=1e-4, rtol=1e-5, msg=f"gradient of {name}")


def test_mixer_in_bf16_is_its_float32_result_rounded() -> None:
    inputs = [t.bfloat16() if t.dim() == 3 else t for t in mixer_inputs(40, 8)]
    grad_out = torch.randn(3, 40, 3).bfloat16()
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        leaves = [(t.to(dtype) if t.dim() == 3 else t).detach().requires_grad_() for t in inputs]
        out = native_mixer(*leaves)
        out.backward(grad_out.to(dtype))
        results.append((out, [t.grad for t in leaves]))
    (out32, grads32), (out16, grads16) = results
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16, out32.bfloat16(), atol=1e-6, rtol=2**-8)
    for name, a, e in zip(NAMES, grads16, grads32, strict=True):
        # activations' gradients rounded once; parameters' summed in float32 either way
        assert a.dtype == e.dtype or name in ("u", "x", "B", "C", "z"), name
        torch.testing.assert_close(a.float(), e.to(a.dtype).float(), atol=1e-6, rtol=2**-8)


@pytest.mark.parametrize("plain", [True, False], ids=["plain scan", "mixer"])
def test_kernel_gives_the_same_result_on_any_number_of_threads(threads: None, plain: bool) -> None:
    inputs = mixer_inputs(20, 16, d_inner=8)
    if plain:  # no bias, skip or gate: x is the step size
        inputs[1], inputs[2], inputs[6], inputs[7] = F.softplus(inputs[1]), None, None, None
    grad_out = torch.randn(3, 20, 8)
    results = []
    for count in (1, 2, 3):
        torch.set_num_threads(count)
        leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
        out = native_mixer(*leaves)
        out.backward(grad_out)
        results.append((out, [None if t is None else t.grad for t in leaves]))
    (out1, grads1), *others = results
    for out, grads in others:
        assert torch.equal(out, out1)  # every (row, channel) recurrence runs alone
        for name, a, e in zip(NAMES, grads, grads1, strict=True):
            if a is None:
                assert e is None and plain
            elif name in ("A", "D", "bias"):  # summed over rows per thread, then over threads
                torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
            else:
                assert torch.equal(a, e), f"gradient of {name}"
