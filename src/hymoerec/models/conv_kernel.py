"""The Mamba mixer's causal depthwise convolution and SiLU as one C kernel
(``hymoerec/kernels/conv.c``), in the (B, L, Di) layout of the rest of the mixer.

Unfused, the mixer transposes u to (B, Di, L) for ``conv1d`` (a copy), cuts the padded
output back to L positions, applies SiLU and transposes back, and backward retraces all
of it. The kernel reads u where ``in_proj`` left it (any strides, float32 or bfloat16),
computes in float32 and writes the result in u's dtype; backward recomputes the
pre-activation. ``kernels.use(True)`` (``train.native_kernels``) turns it on for CPU
training and ranking; where the kernel cannot be built (once warned) the mixer runs the
unfused operators.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hymoerec import kernels
from hymoerec.models.scan_kernel import View, view

_state = {"failed": False}


@cache
def library() -> ctypes.CDLL:
    """conv.c, built on first use; raises ``kernels.KernelUnavailable``."""
    lib = kernels.load("conv")
    sizes = [ctypes.c_int, ctypes.c_int, *[ctypes.c_int64] * 4]  # threads, bf16, B, L, Di, W
    pointer = ctypes.c_void_p
    lib.conv_silu_forward.argtypes = [*sizes, View, pointer, pointer, pointer]
    lib.conv_silu_forward.restype = ctypes.c_int
    lib.conv_silu_backward.argtypes = [*sizes, View, *[pointer] * 6]
    lib.conv_silu_backward.restype = ctypes.c_int
    return lib


def _sizes(x: Tensor, width: int) -> tuple[int, ...]:
    return (torch.get_num_threads(), int(x.dtype == torch.bfloat16), *x.shape, width)


class ConvSilu(torch.autograd.Function):
    """silu(causal depthwise conv(x)) of x (B, L, Di); weight (Di, 1, W), bias (Di,)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        taps = weight.detach().float()[:, 0, :].t().contiguous()  # (W, Di)
        shift = bias.detach().float().contiguous()
        y = torch.empty(x.shape, dtype=x.dtype)
        failed = library().conv_silu_forward(
            *_sizes(x, taps.size(0)), view(x), taps.data_ptr(), shift.data_ptr(), y.data_ptr()
        )
        if failed:
            raise MemoryError("the convolution kernel could not allocate its buffers")
        ctx.save_for_backward(x, taps, shift)
        ctx.dtypes = (weight.dtype, bias.dtype)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, taps, shift = ctx.saved_tensors
        grad_y = grad_y.to(x.dtype).contiguous()
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        grad_taps, grad_shift = torch.empty_like(taps), torch.empty_like(shift)
        failed = library().conv_silu_backward(
            *_sizes(x, taps.size(0)),
            view(x),
            taps.data_ptr(),
            shift.data_ptr(),
            grad_y.data_ptr(),
            grad_x.data_ptr(),
            grad_taps.data_ptr(),
            grad_shift.data_ptr(),
        )
        if failed:
            raise MemoryError("the convolution kernel could not allocate its buffers")
        weight_dtype, bias_dtype = ctx.dtypes
        grad_weight = grad_taps.t()[:, None, :].to(weight_dtype)  # (Di, 1, W)
        return grad_x, grad_weight, grad_shift.to(bias_dtype)


def conv_silu(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """silu(conv(x)) for x (B, L, Di) and the mixer's causal depthwise ``conv``
    (padding W - 1 on both sides, the first L outputs kept): (B, L, Di)."""
    if (
        kernels.enabled()
        and not _state["failed"]
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and conv.bias is not None
    ):
        try:
            out: Tensor = ConvSilu.apply(x, conv.weight, conv.bias)
            return out
        except kernels.KernelUnavailable as error:
            _state["failed"] = True
            kernels.warn_unavailable("convolution kernel", error, "running it unfused")
    length = x.size(1)
    return F.silu(conv(x.transpose(1, 2))[..., :length]).transpose(1, 2)  # causal
