"""The Mamba scan as C kernels (``hymoerec/kernels/scan.c``) called through ctypes.

Training: ``NativeMixer``, the mixer between its convolution and ``out_proj`` in one
kernel each way: the step sizes' bias and softplus, the recurrence of
``SelectiveScan``, the D skip and the SiLU gate, reading the bf16 or float32 activations
in place and rounding once on the way out. Every (row, channel) pair's recurrence runs
over the whole sequence inside the kernel, 16 channels at a time with the channels in
the vector: no per-chunk Python calls, no time-major copies or casts, and backward
recomputes a block's states in cache instead of storing them. Ranking: the state at
each row's last position, read in place in bfloat16 or float32. The kernels share rows
among ``torch.get_num_threads()`` OpenMP threads of torch's own pool.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import torch
from torch import Tensor

from hymoerec import kernels


class View(ctypes.Structure):
    """``struct view`` of scan.c: a (B, L, X) float32 tensor's data and element strides."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("batch", ctypes.c_int64),
        ("time", ctypes.c_int64),
        ("channel", ctypes.c_int64),
    ]


def view(t: Tensor) -> View:
    return View(t.data_ptr(), *t.stride())


@cache
def library() -> ctypes.CDLL:
    """scan.c, built on first use; raises ``kernels.KernelUnavailable``."""
    lib = kernels.load("scan")
    pointer = ctypes.c_void_p
    lib.scan_last.argtypes = [ctypes.c_int, ctypes.c_int, *[ctypes.c_int64] * 3, View, View]
    lib.scan_last.argtypes += [pointer, pointer, View, pointer, pointer, pointer]  # bias, A, ...
    lib.scan_last.restype = ctypes.c_int
    sizes = [ctypes.c_int, ctypes.c_int] + [ctypes.c_int64] * 4  # threads, bf16, B, L, Di, N
    inputs = [View, View, pointer, pointer, View, View, pointer, View]  # u, x, bias, A, ...
    lib.mixer_forward.argtypes = [*sizes, *inputs, View, pointer]  # out, y
    lib.mixer_forward.restype = ctypes.c_int
    grads = [View, View, View, pointer, pointer, View, View, pointer, View]  # grad_out, ...
    lib.mixer_backward.argtypes = [*sizes, *inputs, pointer, *grads]
    lib.mixer_backward.restype = ctypes.c_int
    return lib


def _checked(*tensors: Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> None:
    for t in tensors:
        if t.dtype not in dtypes or t.device.type != "cpu":
            wanted = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
            raise ValueError(
                f"the scan kernel takes {wanted} CPU tensors, got {t.dtype} {t.device}"
            )


@torch.no_grad()
def native_last_output(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C_last: Tensor,
    last: Tensor,
    delta_bias: Tensor | None = None,
) -> Tensor:
    """y at position ``last`` of each row, (B, Di) float32, by the C kernel: what
    ``scan.last_output`` computes. u, delta (B, L, Di) and B (B, L, N) are read in place,
    float32 or bfloat16 (a dtype they do not share is made float32); with ``delta_bias``
    (Di,), ``delta`` is the step size before that bias and its softplus."""
    if len({u.dtype, delta.dtype, B.dtype}) > 1 or u.dtype not in (torch.float32, torch.bfloat16):
        u, delta, B = u.float(), delta.float(), B.float()
    _checked(u, delta, B, dtypes=(torch.float32, torch.bfloat16))
    B = B if B.stride(-1) == 1 else B.contiguous()
    A, C_last = A.float().contiguous(), C_last.float().contiguous()
    _checked(A, C_last)
    bias = None if delta_bias is None else delta_bias.float().contiguous()
    last = last.to(torch.long).contiguous()
    if len(last) and (int(last.min()) < 0 or int(last.max()) >= u.size(1)):
        raise IndexError(f"last positions must lie in [0, {u.size(1)}), got {last.tolist()}")
    y = torch.empty(u.size(0), u.size(2), dtype=torch.float32)
    failed = library().scan_last(
        torch.get_num_threads(),
        int(u.dtype == torch.bfloat16),
        u.size(0),
        u.size(2),
        A.size(1),
        view(u),
        view(delta),
        None if bias is None else bias.data_ptr(),
        A.data_ptr(),
        view(B),
        last.data_ptr(),
        C_last.data_ptr(),
        y.data_ptr(),
    )
    if failed:
        raise MemoryError("the scan kernel could not allocate its state buffers")
    return y


NOTHING = View(None, 0, 0, 0)  # a part left out: no gate


def _address(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class NativeMixer(torch.autograd.Function):
    """out = (scan(u, softplus(x + bias), A, B, C) + D u) * silu(z): the Mamba mixer
    between its convolution and ``out_proj``. u, x, z (B, L, Di) and B, C (B, L, N, a
    contiguous last dimension) all float32 or all bfloat16, read in place with any other
    strides, out in their dtype; bias, D (Di,) and A (Di, N) float32. Step sizes, scan,
    skip and gate run in float32 inside the kernel and are rounded once on the way out.
    bias, D and z may each be None: no softplus (x is the step size), no skip, no gate;
    without all three it is the plain scan."""

    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        x: Tensor,
        bias: Tensor | None,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        z: Tensor | None,
    ) -> Tensor:
        dtype = u.dtype
        _checked(u, x, B, C, *([] if z is None else [z]), dtypes=(dtype,))
        _checked(A, *(t for t in (bias, D) if t is not None))
        out = torch.empty(u.shape, dtype=dtype)
        y = torch.empty(u.shape, dtype=torch.float32)  # before the gate, for backward
        failed = library().mixer_forward(
            torch.get_num_threads(), int(dtype == torch.bfloat16), *u.shape, A.size(1),
            view(u), view(x), _address(bias), A.data_ptr(), view(B), view(C), _address(D),
            NOTHING if z is None else view(z), view(out), y.data_ptr(),
        )  # fmt: skip
        if failed:
            raise MemoryError("the scan kernel could not allocate its buffers")
        ctx.parts = (bias is not None, D is not None, z is not None)
        ctx.save_for_backward(u, x, bias, A, B, C, D, z, y)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        u, x, bias, A, B, C, D, z, y = ctx.saved_tensors
        grad_out = grad_out.to(u.dtype)
        grad_u, grad_x, grad_z = (torch.empty(u.shape, dtype=u.dtype) for _ in range(3))
        grad_B, grad_C = torch.empty(B.shape, dtype=B.dtype), torch.empty(C.shape, dtype=C.dtype)
        grad_bias, grad_A, grad_D = (
            A.new_empty(A.size(0)),
            A.new_empty(A.shape),
            A.new_empty(A.size(0)),
        )
        failed = library().mixer_backward(
            torch.get_num_threads(), int(u.dtype == torch.bfloat16), *u.shape, A.size(1),
            view(u), view(x), _address(bias), A.data_ptr(), view(B), view(C), _address(D),
            NOTHING if z is None else view(z), y.data_ptr(), view(grad_out), view(grad_u),
            view(grad_x), grad_bias.data_ptr(), grad_A.data_ptr(), view(grad_B),
            view(grad_C), grad_D.data_ptr(), view(grad_z),
        )  # fmt: skip
        if failed:
            raise MemoryError("the scan kernel could not allocate its buffers")
        has_bias, has_D, has_z = ctx.parts
        return (
            grad_u,
            grad_x,
            grad_bias if has_bias else None,
            grad_A,
            grad_B,
            grad_C,
            grad_D if has_D else None,
            grad_z if has_z else None,
        )


def native_mixer(
    u: Tensor,
    x: Tensor,
    bias: Tensor | None,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
) -> Tensor:
    """``NativeMixer``'s output. Inputs that do not share one of its dtypes are made
    float32, B and C contiguous where their last dimension is not."""
    activations = [u, x, B, C] + ([] if z is None else [z])
    if len({t.dtype for t in activations}) > 1 or u.dtype not in (torch.float32, torch.bfloat16):
        u, x, B, C = (t.float() for t in (u, x, B, C))
        z = None if z is None else z.float()
    B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (B, C))
    bias, D = (None if t is None else t.float().contiguous() for t in (bias, D))
    out: Tensor = NativeMixer.apply(u, x, bias, A.float().contiguous(), B, C, D, z)
    return out


def native_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """y (B, L, Di) of the plain scan by the same kernel: float32 or bfloat16 inputs."""
    return native_mixer(u, delta, None, A, B, C, None, None)
