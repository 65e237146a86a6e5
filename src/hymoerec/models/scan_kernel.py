"""The training scan as one C kernel (``hymoerec/kernels/scan.c``) called through ctypes.

``SelectiveScan``'s recurrence and gradients in float32, with every (row, channel)
pair's recurrence run over the whole sequence inside the kernel: no per-chunk Python
calls, no time-major copies, and backward recomputes each pair's states in cache instead
of storing them; and ranking's state at each row's last position, read in place in
bfloat16 or float32. The kernels share rows among ``torch.get_num_threads()`` OpenMP
threads of torch's own pool.
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
    sizes = [ctypes.c_int] + [ctypes.c_int64] * 4  # threads, B, L, Di, N
    lib.scan_forward.argtypes = [*sizes, View, View, ctypes.c_void_p, View, View, View]
    lib.scan_forward.restype = None
    after_A = [View] * 5 + [ctypes.c_void_p, View, View]  # B, C, grad_y, grad_u, ...
    lib.scan_backward.argtypes = [*sizes, View, View, ctypes.c_void_p, *after_A]
    lib.scan_backward.restype = ctypes.c_int
    pointer = ctypes.c_void_p
    lib.scan_last.argtypes = [ctypes.c_int, ctypes.c_int, *[ctypes.c_int64] * 3, View, View]
    lib.scan_last.argtypes += [pointer, pointer, View, pointer, pointer, pointer]  # bias, A, ...
    lib.scan_last.restype = ctypes.c_int
    return lib


def _checked(*tensors: Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> None:
    for t in tensors:
        if t.dtype not in dtypes or t.device.type != "cpu":
            raise ValueError(f"the scan kernel takes float32 CPU tensors, got {t.dtype} {t.device}")


class NativeScan(torch.autograd.Function):
    """y = scan(u, delta, A, B, C); u, delta: (B, L, Di); A: (Di, N); B, C: (B, L, N).

    Any strides for u and delta; B and C are read in place when their last dimension is
    contiguous (a split of ``x_proj``'s output)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        _checked(u, delta, A, B, C)
        A = A.contiguous()
        B, C = (x if x.stride(-1) == 1 else x.contiguous() for x in (B, C))
        y = u.new_empty(u.shape)  # (B, L, Di)
        sizes = (torch.get_num_threads(), *u.shape, A.size(1))
        library().scan_forward(*sizes, view(u), view(delta), A.data_ptr(), *map(view, (B, C, y)))
        ctx.save_for_backward(u, delta, A, B, C)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, ...]:
        u, delta, A, B, C = ctx.saved_tensors
        grad_y = grad_y.float()
        grad_u, grad_delta = u.new_empty(u.shape), u.new_empty(u.shape)
        grad_A, grad_B, grad_C = A.new_empty(A.shape), B.new_empty(B.shape), C.new_empty(C.shape)
        sizes = (torch.get_num_threads(), *u.shape, A.size(1))
        failed = library().scan_backward(
            *sizes,
            view(u),
            view(delta),
            A.data_ptr(),
            *map(view, (B, C, grad_y, grad_u, grad_delta)),
            grad_A.data_ptr(),
            view(grad_B),
            view(grad_C),
        )
        if failed:
            raise MemoryError("the scan kernel could not allocate its state buffers")
        return grad_u, grad_delta, grad_A, grad_B, grad_C


def native_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """y (B, L, Di) of the scan, by the C kernel; float32 CPU inputs."""
    out: Tensor = NativeScan.apply(u, delta, A, B, C)
    return out


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
