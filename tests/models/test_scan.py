"""The chunked selective scan (hymoerec.models.scan) against the step-by-step recurrence,
compiled and uncompiled, and its fall-back when compiling fails."""

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from hymoerec.models import build_model, scan
from hymoerec.models.mamba import SelectiveScan, last_state_scan
from tests.models.test_mamba import recurrence, scan_inputs


@pytest.fixture(autouse=True)
def fresh_scan_state() -> Iterator[None]:
    """Each test starts with compiled scans off, not failed, and no cached kernels."""
    saved = dict(scan._state)
    yield
    scan._state.update(saved)
    scan._compiled.clear()


@pytest.mark.parametrize("length", [1, scan.CHUNK - 1, scan.CHUNK, 2 * scan.CHUNK + 3])
def test_chunked_scan_matches_the_recurrence_and_its_gradients(length: int) -> None:
    inputs = [t.double().requires_grad_() for t in scan_inputs(batch=3, length=length)]
    weight = torch.randn(3, length, 3, dtype=torch.float64)
    expected = recurrence(*inputs)
    expected_grads = torch.autograd.grad((expected * weight).sum(), inputs)
    actual = scan.chunked_scan(*inputs, compiled=False)
    torch.testing.assert_close(actual, expected)
    grads = torch.autograd.grad((actual * weight).sum(), inputs)
    for name, a, e in zip(["u", "delta", "A", "B", "C"], grads, expected_grads, strict=True):
        torch.testing.assert_close(a, e, msg=f"gradient of {name}")


def test_chunked_last_output_matches_the_recurrence_at_each_rows_last_position() -> None:
    size = scan.FINAL_CHUNK
    u, delta, A, B, C = scan_inputs(batch=4, length=2 * size + 5)
    # the length is no multiple of the chunk: the last chunk overlaps the one before it
    last = torch.tensor([0, size - 1, size, 2 * size + 4])
    rows = torch.arange(4)
    expected = recurrence(u.double(), delta.double(), A.double(), B.double(), C.double())
    actual = scan.last_output(u, delta, A, B, C[rows, last], last, compiled=False)
    torch.testing.assert_close(actual.double(), expected[rows, last], atol=1e-5, rtol=1e-5)
    u[:, -3:], delta[:, -3:] = 1e3, 50.0  # after every last position but the fourth row's
    changed = scan.last_output(u, delta, A, B, C[rows, last], last, compiled=False)
    torch.testing.assert_close(changed[:3], actual[:3])


def test_chunked_last_output_of_histories_shorter_than_a_chunk() -> None:
    u, delta, A, B, C = scan_inputs(batch=3, length=5)
    last = torch.tensor([0, 2, 4])
    rows = torch.arange(3)
    expected = recurrence(u.double(), delta.double(), A.double(), B.double(), C.double())
    actual = scan.last_output(u, delta, A, B, C[rows, last], last, compiled=False)
    torch.testing.assert_close(actual.double(), expected[rows, last], atol=1e-5, rtol=1e-5)


def test_chunked_last_output_reads_bf16_strided_inputs_as_their_float32_values() -> None:
    """Under a bf16 autocast u and B arrive in bf16, B as a column slice of a projection:
    the same result as float32 copies of the same values."""
    u, delta, A, B, C = scan_inputs(batch=3, length=scan.FINAL_CHUNK + 7)
    projection = torch.cat([torch.randn(3, u.size(1), 2), B, C], dim=-1).bfloat16()
    B16, C16 = projection[..., 2 : 2 + B.size(-1)], projection[..., 2 + B.size(-1) :]
    assert not B16.is_contiguous()
    last = torch.tensor([3, scan.FINAL_CHUNK + 1, scan.FINAL_CHUNK + 6])
    rows = torch.arange(3)
    u16 = u.bfloat16()
    actual = scan.last_output(u16, delta, A, B16, C16[rows, last], last, compiled=False)
    expected = scan.last_output(
        u16.float(), delta, A, B16.float(), C16[rows, last].float(), last, compiled=False
    )
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=0.0, rtol=0.0)


def test_chunked_last_output_applies_the_delta_bias_and_softplus_itself() -> None:
    u, delta, A, B, C = scan_inputs(batch=3, length=scan.FINAL_CHUNK + 4)
    raw, bias = torch.randn_like(delta), torch.randn(delta.size(-1)) - 2.0
    last = torch.tensor([1, scan.FINAL_CHUNK, scan.FINAL_CHUNK + 3])
    C_last = C[torch.arange(3), last]
    fused = scan.last_output(u, raw, A, B, C_last, last, compiled=False, delta_bias=bias)
    expected = scan.last_output(u, F.softplus(raw + bias), A, B, C_last, last, compiled=False)
    torch.testing.assert_close(fused, expected, atol=1e-6, rtol=1e-6)


def test_compiled_chunks_match_the_per_step_scan() -> None:
    """The torch.compile kernels themselves (the slow test of this file: it compiles)."""
    length = scan.FINAL_CHUNK + 3  # forward: chunks of 8 with a padded tail
    inputs = [t.requires_grad_() for t in scan_inputs(batch=2, length=length)]
    weight = torch.randn(2, length, 3)
    expected = SelectiveScan.apply(*inputs)
    expected_grads = torch.autograd.grad((expected * weight).sum(), inputs)
    actual = scan.chunked_scan(*inputs, compiled=True)
    assert not scan._state["failed"], "compiling failed; the fall-back ran instead"
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad((actual * weight).sum(), inputs)
    for name, a, e in zip(["u", "delta", "A", "B", "C"], grads, expected_grads, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")
    u, delta, A, B, C = (t.detach() for t in inputs)
    last = torch.tensor([2, scan.FINAL_CHUNK + 2])  # a whole chunk and an overlapping one
    C_last = C[torch.arange(2), last]
    with scan.use(True, native=False):
        compiled = last_state_scan(u, delta, A, B, C_last, last)
    torch.testing.assert_close(compiled, last_state_scan(u, delta, A, B, C_last, last))
    bias = torch.randn(u.size(-1))  # delta before its bias and softplus, applied inside
    with scan.use(True, native=False):
        compiled = last_state_scan(u, delta, A, B, C_last, last, delta_bias=bias)
    eager = last_state_scan(u, delta, A, B, C_last, last, delta_bias=bias)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)


def test_a_failed_compilation_warns_and_falls_back_for_the_rest_of_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object):  # what torch.compile returns without gcc
        def kernel(*a: object) -> None:
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

        return kernel

    monkeypatch.setattr(torch, "compile", broken)
    inputs = scan_inputs(batch=2, length=5)
    with scan.use(True):
        assert scan.active(torch.device("cpu"))
        with pytest.warns(RuntimeWarning, match="no working C\\+\\+ compiler"):
            y = scan.chunked_scan(*inputs, compiled=True)
        assert not scan.active(torch.device("cpu"))
    torch.testing.assert_close(y, SelectiveScan.apply(*inputs))


def test_compile_scan_gives_the_model_the_same_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch reaches the model's mixer (torch.compile made the identity to stay fast);
    ``native=False`` keeps the chunks for the training scan too."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    calls = []
    original = scan.ChunkedScan.apply
    monkeypatch.setattr(scan.ChunkedScan, "apply", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(0)
    model = build_model("hymoerec", {"hidden_size": 16, "d_state": 4, "dropout": 0.0}, 30)
    model.eval()
    items = torch.randint(1, 31, (3, 11))
    plain = model(items).hidden
    assert not calls
    with scan.use(True, native=False):
        chunked = model(items).hidden
    assert calls, "the chunked scan was not used"
    torch.testing.assert_close(chunked, plain, atol=1e-5, rtol=1e-4)
