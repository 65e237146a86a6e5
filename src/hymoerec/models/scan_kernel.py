"""The training scan as one C kernel (``hymoerec/kernels/scan.c``) called through ctypes.

``SelectiveScan``'s recurrence and gradients in float32, with every (row, channel)
pair's recurrence run over the whole sequence inside the kernel: no per-chunk Python
calls, no time-major copies, and backward recomputes each pair's states in cache instead
of storing them. The kernel shares rows among ``torch.get_num_threads()`` OpenMP threads
of torch's own pool.
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
        ("batch", ctypes.c_long),
        ("time", ctypes.c_long),
        ("channel", ctypes.c_long),
    ]


def view(t: Tensor) -> View:
    return View(t.data_ptr(), *t.stride())


@cache
def library() -> ctypes.CDLL:
    """scan.c, built on first use; raises ``kernels.KernelUnavailable``."""
    lib = kernels.load("scan")
    sizes = [ctypes.c_int] + [ctypes.c_long] * 4  # threads, B, L, Di, N
    lib.scan_forward.argtypes = [*sizes, View, View, ctypes.c_void_p, View, View, View]
    lib.scan_forward.restype = None
    after_A = [View] * 5 + [ctypes.c_void_p, View, View]  # B, C, grad_y, grad_u, ...
    lib.scan_backward.argtypes = [*sizes, View, View, ctypes.c_void_p, *after_A]
    lib.scan_backward.restype = ctypes.c_int
    return lib


def _checked(*tensors: Tensor) -> None:
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu":
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
