"""The point-wise FFN's GELU and dropout as one C kernel (``hymoerec/kernels/ffn.c``).

Unfused, a training step's FFN activation passes through GELU, the dropout mask's
generator (one thread), the mask's comparison and the product, and backward through the
product and GELU's derivative again. The kernel does each direction in one pass on
torch's threads: the mask is a hash of each element's index and of a seed drawn from
torch's generator (so ``torch.manual_seed`` fixes it), and backward recomputes it from
the seed instead of keeping it. An element is kept with probability 1 - k / 2^32,
k = round(p 2^32), and scaled by the exact inverse. GELU is the exact (erf) form, to
2e-7. ``kernels.use(True)`` (``train.native_kernels``) turns it on for CPU training; elsewhere,
and where the kernel cannot be built (once warned), the FFN runs unfused.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hymoerec import kernels

_state = {"failed": False}


@cache
def library() -> ctypes.CDLL:
    """ffn.c, built on first use; raises ``kernels.KernelUnavailable``."""
    lib = kernels.load("ffn")
    pointer = ctypes.c_void_p
    lib.gelu_dropout.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, pointer, pointer]
    lib.gelu_dropout.argtypes += [pointer, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_float]
    lib.gelu_dropout.restype = None
    return lib


def _run(x: Tensor, grad: Tensor | None, seed: int, p: float) -> Tensor:
    drop = round(p * 2**32)  # elements whose hash is below this are dropped
    out = torch.empty_like(x)
    library().gelu_dropout(
        torch.get_num_threads(),
        int(x.dtype == torch.bfloat16),
        x.numel(),
        x.data_ptr(),
        None if grad is None else grad.data_ptr(),
        out.data_ptr(),
        seed,
        drop,
        2**32 / (2**32 - drop),
    )
    return out


class GeluDropout(torch.autograd.Function):
    """dropout(gelu(x), p) of a contiguous float32 or bfloat16 CPU tensor, 0 < p < 1."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:
        seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))  # torch's generator
        ctx.save_for_backward(x)
        ctx.seed, ctx.p = seed, p
        return _run(x, None, seed, p)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return _run(x, grad.to(x.dtype).contiguous(), ctx.seed, ctx.p), None


def fits(x: Tensor, p: float, training: bool) -> bool:
    """Whether the kernel takes this call."""
    return (
        kernels.enabled()
        and not _state["failed"]
        and training
        and 0.0 < p < 1.0
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.is_contiguous()
    )


def gelu_dropout(x: Tensor, p: float, training: bool, dropout: torch.nn.Module) -> Tensor:
    """``dropout(gelu(x))``: through the kernel when ``fits``, else with ``dropout``."""
    if fits(x, p, training):
        try:
            library()  # built before the seed is drawn: a fall-back draws the same mask
            out: Tensor = GeluDropout.apply(x, p)
            return out
        except kernels.KernelUnavailable as error:
            _state["failed"] = True
            kernels.warn_unavailable("FFN kernel", error, "running GELU and dropout unfused")
    result: Tensor = dropout(F.gelu(x))
    return result
