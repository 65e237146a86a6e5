"""The chunked selective scan (hymoerec.models.scan) against the step-by-step recurrence,
compiled and uncompiled, and its fall-back when compiling fails."""

from collections.abc import Iterator

import pytest
import torch

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
    u, delta, A, B, C = scan_inputs(batch=4, length=2 * scan.CHUNK + 5)
    last = torch.tensor([0, scan.CHUNK - 1, scan.CHUNK, 2 * scan.CHUNK + 4])
    rows = torch.arange(4)
    expected = recurrence(u.double(), delta.double(), A.double(), B.double(), C.double())
    actual = scan.last_output(u, delta, A, B, C[rows, last], last, compiled=False)
    torch.testing.assert_close(actual.double(), expected[rows, last], atol=1e-5, rtol=1e-5)
    u[:, -3:], delta[:, -3:] = 1e3, 50.0  # after every last position but the fourth row's
    changed = scan.last_output(u, delta, A, B, C[rows, last], last, compiled=False)
    torch.testing.assert_close(changed[:3], actual[:3])


def test_compiled_chunks_match_the_per_step_scan() -> None:
    """The torch.compile kernels themselves (the slow test of this file: it compiles)."""
    inputs = [t.requires_grad_() for t in scan_inputs(batch=2, length=scan.CHUNK + 3)]
    weight = torch.randn(2, scan.CHUNK + 3, 3)
    expected = SelectiveScan.apply(*inputs)
    expected_grads = torch.autograd.grad((expected * weight).sum(), inputs)
    actual = scan.chunked_scan(*inputs, compiled=True)
    assert not scan._state["failed"], "compiling failed; the fall-back ran instead"
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad((actual * weight).sum(), inputs)
    for name, a, e in zip(["u", "delta", "A", "B", "C"], grads, expected_grads, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")
    u, delta, A, B, C = (t.detach() for t in inputs)
    last = torch.tensor([2, scan.CHUNK + 2])
    C_last = C[torch.arange(2), last]
    with scan.use(True):
        compiled = last_state_scan(u, delta, A, B, C_last, last)
    torch.testing.assert_close(compiled, last_state_scan(u, delta, A, B, C_last, last))


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
    """The switch reaches the model's mixer (torch.compile made the identity to stay fast)."""
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
    with scan.use(True):
        chunked = model(items).hidden
    assert calls, "the chunked scan was not used"
    torch.testing.assert_close(chunked, plain, atol=1e-5, rtol=1e-4)
