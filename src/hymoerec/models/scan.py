"""The selective scan in fused chunks: ``torch.compile`` kernels for the CPU.

The per-step scan of ``hymoerec.models.mamba`` issues about five small operators per
time step forward and twelve backward, each one a pass over a (B, d_inner, d_state)
state. Here the recurrence runs ``CHUNK`` steps at a time in one function that
``torch.compile`` (Inductor) fuses into a few loops over the state, so the state is read
and written once per step instead of once per operator. Forward keeps only the state
before each chunk; backward recomputes the chunk's states inside its fused kernel, which
is cheaper than writing and reading back every state (the per-step scan stores all of
them: 105 MB per layer at B=32, L=200, Di=128, N=32). The sequence is padded to a
multiple of ``CHUNK`` with delta = 0 and u = 0, which leaves the state unchanged
(decay exp(0) = 1, nothing injected), so the padding changes no output or gradient.

The same chunk functions run uncompiled too (``compiled=False``): that is the reference
the tests hold the compiled kernels to. Compiling needs a C++ compiler; when it fails the
scan warns once and falls back to the per-step loop of ``hymoerec.models.mamba`` for the
rest of the process.

With ``use(True, native=True)`` (``train.native_kernels``) the training scan and the
ranking's last-position state go through the C kernels of ``scan_kernel`` first, which
do the same work without chunks (3.26x and 1.9x these); the chunks remain their
fall-back where those cannot be built.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hymoerec import kernels
from hymoerec.models.scan_kernel import native_last_output, native_mixer, native_scan

CHUNK = 8  # time steps per fused kernel call: Inductor unrolls them
FINAL_CHUNK = 16  # the same for inference, which keeps no state and has no backward


def _decay(delta: Tensor, A: Tensor) -> Tensor:
    """exp(delta_t A), (B, Di, N), of one step's delta (B, Di)."""
    return torch.exp(delta[:, :, None] * A)


def _inject(du: Tensor, B: Tensor) -> Tensor:
    """delta_t u_t B_t, (B, Di, N), of one step's du (B, Di) and B (B, N)."""
    return du[:, :, None] * B[:, None, :]


def forward_chunk(
    h: Tensor, delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor
) -> tuple[Tensor, Tensor]:
    """``len(delta)`` steps from state h (B, Di, N), inputs time-major (T, B, X): returns
    (the last state (B, Di, N), y (T, B, Di))."""
    ys = []
    for t in range(delta.size(0)):
        h = _decay(delta[t], A) * h + _inject(du[t], B[t])
        ys.append((h * C[t, :, None, :]).sum(-1))
    return h, torch.stack(ys)


def backward_chunk(
    grad_h: Tensor,
    grad_y: Tensor,
    before: Tensor,
    delta: Tensor,
    du: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
) -> tuple[Tensor, ...]:
    """The chunk's steps backwards, time-major: grad_h carried in from the next chunk,
    ``before`` the state preceding the chunk, from which the chunk's states are recomputed
    (forward keeps one state per chunk). Returns (grad_h carried out, grad C, grad B,
    grad du, grad of delta through the decay, grad A summed over the chunk)."""
    states, decays, h = [], [], before
    for t in range(delta.size(0)):
        decays.append(_decay(delta[t], A))
        h = decays[t] * h + _inject(du[t], B[t])
        states.append(h)
    grad_C, grad_B, grad_du, grad_delta = [], [], [], []
    grad_A = torch.zeros_like(A)
    for t in range(delta.size(0) - 1, -1, -1):
        grad_h = grad_h + grad_y[t, :, :, None] * C[t, :, None, :]
        grad_C.append((grad_y[t, :, :, None] * states[t]).sum(1))
        grad_B.append((du[t, :, :, None] * grad_h).sum(1))
        grad_du.append((grad_h * B[t, :, None, :]).sum(-1))
        decay = decays[t]
        grad_log_decay = grad_h * (states[t - 1] if t > 0 else before) * decay
        grad_delta.append((grad_log_decay * A).sum(-1))
        grad_A = grad_A + (grad_log_decay * delta[t, :, :, None]).sum(0)
        grad_h = grad_h * decay
    ordered = [torch.stack(grads[::-1]) for grads in (grad_C, grad_B, grad_du, grad_delta)]
    return (grad_h, *ordered, grad_A)


def final_chunk(
    h: Tensor,
    delta: Tensor,
    u: Tensor,
    keep: Tensor,
    A: Tensor,
    B: Tensor,
    bias: Tensor | None = None,
) -> Tensor:
    """The state after ``delta.size(1)`` steps from h (inference). Inputs are batch-major
    (B, T, X) slices of the whole sequence, read in place (any strides; delta, u and B in
    any float dtype). With ``bias`` (Di,), ``delta`` is the step size before that bias and
    its softplus, both applied here in float32 (mamba_ssm's ``delta_bias``). ``keep``
    (B, T) is 1 where a step counts and 0 where it must leave the state unchanged (after
    a row's last position, or a step an earlier chunk took): a step of 0 has decay
    exp(0) = 1 and injects nothing."""
    for t in range(delta.size(1)):
        step = delta[:, t].float()  # (B, Di)
        if bias is not None:
            step = F.softplus(step + bias)
        step = step * keep[:, t, None]
        inject = (step * u[:, t].float())[:, :, None] * B[:, t, None, :].float()
        h = _decay(step, A) * h + inject
    return h


_EAGER: dict[str, Callable[..., Any]] = {
    "forward": forward_chunk,
    "backward": backward_chunk,
    "final": final_chunk,
}
_compiled: dict[str, Callable[..., Any]] = {}
_state = {"enabled": False, "failed": False, "native": True, "native_failed": False}


@contextmanager
def use(on: bool, native: bool = True) -> Iterator[None]:
    """Inside: CPU scans run compiled when ``on`` (``train.compile_scan``): through the
    C kernels when ``native`` (``train.native_kernels``), else as chunks."""
    previous = dict(_state)
    _state["enabled"], _state["native"] = on, native
    try:
        yield
    finally:
        _state["enabled"], _state["native"] = previous["enabled"], previous["native"]


def active(device: torch.device) -> bool:
    """Whether scans on ``device`` go through the compiled chunks now."""
    return _state["enabled"] and not _state["failed"] and device.type == "cpu"


def _kernel(name: str, compiled: bool) -> Callable[..., Any]:
    """The chunk function ``name``, compiled when asked. A compiled call that fails
    (no C++ compiler, an Inductor error) warns once, runs the uncompiled function, and
    turns compiled scans off for the rest of the process."""
    eager = _EAGER[name]
    if not compiled:
        return eager
    if name not in _compiled:
        _compiled[name] = torch.compile(eager, fullgraph=True)
    kernel = _compiled[name]

    def run(*args: Tensor) -> Any:
        if _state["failed"]:
            return eager(*args)
        try:
            return kernel(*args)
        except Exception as error:  # Inductor raises many types: no compiler, ...
            _state["failed"] = True
            warnings.warn(
                f"compiled selective scan unavailable ({type(error).__name__}: {error}); "
                "using the per-step scan",
                RuntimeWarning,
                stacklevel=2,
            )
            return eager(*args)

    return run


def _time_major(length: int, *tensors: Tensor) -> list[Tensor]:
    """(B, L, X) tensors as contiguous (length, B, X), zero-padded at the end: every chunk
    is then a contiguous slice of the same shape, which the compiled kernels expect."""
    out = []
    for t in tensors:
        t = t.transpose(0, 1)
        if t.size(0) < length:
            t = F.pad(t, (0, 0, 0, 0, 0, length - t.size(0)))
        out.append(t.contiguous())
    return out


class ChunkedScan(torch.autograd.Function):
    """``SelectiveScan``'s recurrence and gradients, CHUNK steps per kernel call."""

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, compiled: bool
    ) -> Tensor:
        length = u.size(1)
        padded = -(-length // CHUNK) * CHUNK
        u, delta, B, C = _time_major(padded, u, delta, B, C)  # (L, B, X)
        step = _kernel("forward", compiled)
        du = delta * u
        h = u.new_zeros(u.size(1), u.size(2), A.size(1))
        befores, ys = [], []  # the state before each chunk: backward recomputes the rest
        with torch.autocast(u.device.type, enabled=False):
            for s in range(0, padded, CHUNK):
                chunk = slice(s, s + CHUNK)
                befores.append(h)
                h, y = step(h, delta[chunk], du[chunk], A, B[chunk], C[chunk])
                ys.append(y)
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(befores))
        ctx.length, ctx.compiled = length, compiled
        return torch.cat(ys)[:length].transpose(0, 1)  # (B, L, Di)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        u, delta, A, B, C, befores = ctx.saved_tensors  # time-major, padded
        length, padded = ctx.length, u.size(0)
        (grad_y,) = _time_major(padded, grad_y)
        step = _kernel("backward", ctx.compiled)
        du = delta * u
        grad_h = torch.zeros_like(befores[0])
        grad_A = torch.zeros_like(A)
        blocks = []
        with torch.autocast(u.device.type, enabled=False):
            for s in range(padded - CHUNK, -1, -CHUNK):
                chunk = slice(s, s + CHUNK)
                grad_h, *grads, grad_A_chunk = step(
                    grad_h,
                    grad_y[chunk],
                    befores[s // CHUNK],
                    delta[chunk],
                    du[chunk],
                    A,
                    B[chunk],
                    C[chunk],
                )
                grad_A += grad_A_chunk
                blocks.append(grads)
        grad_C, grad_B, grad_du, grad_delta = (
            torch.cat(parts[::-1])[:length].transpose(0, 1) for parts in zip(*blocks, strict=True)
        )
        u, delta = u[:length].transpose(0, 1), delta[:length].transpose(0, 1)
        grad_delta = grad_delta + grad_du * u
        return grad_du * delta, grad_delta, grad_A, grad_B, grad_C, None


def training_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """y (B, L, Di) of the scan with gradients, compiled: the C kernel of
    ``scan_kernel`` when ``use(..., native=True)`` and it builds here, else the chunks.
    A kernel that cannot be built warns once and leaves the chunks for the process."""
    if _state["native"] and not _state["native_failed"]:
        try:
            return native_scan(u, delta, A, B, C)
        except kernels.KernelUnavailable as error:
            _without_native(error)
    return chunked_scan(u, delta, A, B, C)


def training_mixer(
    u: Tensor, x: Tensor, bias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor
) -> Tensor | None:
    """(scan + D u) * silu(z) with the step size softplus(x + bias), all by the C kernel
    (``scan_kernel.NativeMixer``) when CPU scans go through the C kernels now; else None,
    and the caller composes it from the scan. A kernel that cannot be built warns once."""
    if not (active(u.device) and _state["native"] and not _state["native_failed"]):
        return None
    try:
        return native_mixer(u, x, bias, A, B, C, D, z)
    except kernels.KernelUnavailable as error:
        _without_native(error)
        return None


def _without_native(error: kernels.KernelUnavailable) -> None:
    """Warn once that the C kernel is unavailable and use the chunks from now on."""
    _state["native_failed"] = True
    kernels.warn_unavailable("scan kernel", error, "using the compiled chunks")


def chunked_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    compiled: bool = True,
) -> Tensor:
    """y (B, L, Di) of the scan, in chunks."""
    out: Tensor = ChunkedScan.apply(u, delta, A, B, C, compiled)
    return out


@torch.no_grad()
def last_output(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C_last: Tensor,
    last: Tensor,
    compiled: bool = True,
    delta_bias: Tensor | None = None,
) -> Tensor:
    """y at position ``last`` of each row, (B, Di). u (B, L, Di) and B (B, L, N) may be
    bfloat16 and strided (a split of a projection): the kernel reads them in place and
    computes in float32. With ``delta_bias`` (Di,), ``delta`` is the step size before that
    bias and its softplus, which the kernel applies (one pass over delta fewer). Steps
    after a row's ``last`` are masked (they hold the state), so every row runs the same
    chunks of ``FINAL_CHUNK`` steps; when the length is not a multiple of it, the last
    chunk ends at the last position and masks the steps the chunk before it took, so no
    input is copied or padded. With ``use(..., native=True)`` and ``compiled``, the C
    kernel of ``scan_kernel`` computes the same instead."""
    if compiled and _state["native"] and not _state["native_failed"]:
        try:
            return native_last_output(u, delta, A, B, C_last, last, delta_bias)
        except kernels.KernelUnavailable as error:
            _without_native(error)
    end = int(last.max()) + 1
    if end < FINAL_CHUNK:  # too short for one whole chunk: pad (a tiny copy)
        pad = FINAL_CHUNK - end
        u, delta, B = (F.pad(x[:, :end], (0, 0, 0, pad)) for x in (u, delta, B))
        end = FINAL_CHUNK
    keep = (torch.arange(end, device=u.device)[None, :] <= last[:, None]).float()  # (B, end)
    step = _kernel("final", compiled)
    h = u.new_zeros(u.size(0), u.size(2), A.size(1), dtype=torch.float32)
    whole = end // FINAL_CHUNK * FINAL_CHUNK
    chunks = [(s, keep[:, s : s + FINAL_CHUNK]) for s in range(0, whole, FINAL_CHUNK)]
    if whole < end:
        tail = keep[:, end - FINAL_CHUNK :].clone()
        tail[:, : whole - (end - FINAL_CHUNK)] = 0.0  # taken by the chunk before
        chunks.append((end - FINAL_CHUNK, tail))
    bias = None if delta_bias is None else delta_bias.float()
    with torch.autocast(u.device.type, enabled=False):
        for s, mask in chunks:
            chunk = slice(s, s + FINAL_CHUNK)
            h = step(h, delta[:, chunk], u[:, chunk], mask, A, B[:, chunk], bias)
    return torch.bmm(h, C_last[:, :, None].float()).squeeze(-1)
