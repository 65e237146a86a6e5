"""The chunked cross-entropy's bfloat16 path as one C kernel (``hymoerec/kernels/ce.c``).

Under ``train.bf16`` the loss is three bf16 products per chunk of targets (the logits,
then the two gradient products) with the softmax kernel between them, and each product
hands the chunk's logits or probabilities to the next through the CPU's shared cache. The
kernel does all of it with AVX-512 BF16 dot products, each thread taking blocks of 48
targets from start to end: their logits stay in its own cache through the softmax, and the
item table's gradient collects in a float32 buffer per thread, added up once. The values
are those of the chunked path up to bf16 rounding (the logits are not rounded to bf16
here; the probabilities are, as there); tests/training/test_ce_kernel.py holds it to
float64 and to the chunked path.

It runs where ``kernels.use(True)`` (``train.native_kernels``) is on, the CPU has AVX-512
BF16, the hidden size is a multiple of 64 and its buffers fit ``MAX_BYTES``; elsewhere,
and where it cannot be built (once warned), the chunked products run.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from torch import Tensor

from hymoerec import kernels

MAX_BYTES = 1 << 29  # the kernel's tables and per-thread buffers: 512 MiB (~300k items)

_state = {"failed": False, "off": False}


@contextmanager
def off() -> Iterator[None]:
    """Inside: ``fits`` says no, so that the chunked products run (to time against)."""
    previous = _state["off"]
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = previous


@cache
def library() -> ctypes.CDLL:
    """ce.c, built on first use; raises ``kernels.KernelUnavailable``."""
    lib = kernels.load("ce")
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    lib.ce_available.argtypes = []
    lib.ce_available.restype = ctypes.c_int
    lib.ce_scratch_bytes.argtypes = [ctypes.c_int, size, size]
    lib.ce_scratch_bytes.restype = size
    lib.ce_forward.argtypes = [ctypes.c_int, size, size, size, *[pointer] * 6]
    lib.ce_forward.restype = ctypes.c_int
    return lib


def fits(hidden: Tensor, table: Tensor) -> bool:
    """Whether the kernel takes hidden (T, D) and the item table (N + 1, D), both bf16;
    builds it on first use."""
    if not (
        kernels.enabled()
        and not _state["failed"]
        and not _state["off"]
        and hidden.device.type == "cpu"
        and hidden.dtype == table.dtype == torch.bfloat16
        and hidden.dim() == table.dim() == 2
        and hidden.size(1) == table.size(1)
        and hidden.size(1) % 64 == 0
        and table.size(0) > 1
    ):
        return False
    try:
        lib = library()
    except kernels.KernelUnavailable as error:
        _state["failed"] = True
        kernels.warn_unavailable("cross-entropy kernel", error, "running the chunked products")
        return False
    if not lib.ce_available():  # built without AVX-512 BF16
        _state["failed"] = True
        return False
    needed = lib.ce_scratch_bytes(torch.get_num_threads(), table.size(0), table.size(1))
    return bool(needed <= MAX_BYTES)


def fused_ce(hidden: Tensor, table: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For hidden (T, D) and table (N + 1, D) in bf16 with ``fits``, targets (T,) in 1..N:
    (-log p(target) (T,) float64, the softmax part of d/d hidden, sum_n p[t, n] table[n]
    (T, D) float32, and of d/d table, sum_t p[t, n] hidden[t] (N + 1, D) float32), p the
    softmax over items 1..N (item 0, the padding, gets 0). The one-hot parts are the
    caller's."""
    hidden, table = hidden.contiguous(), table.contiguous()
    targets = targets.to(torch.int64).contiguous()
    rows, dim = hidden.shape
    if targets.shape != (rows,):
        raise ValueError(f"{rows} hidden rows need {rows} targets, got {tuple(targets.shape)}")
    if rows and not 0 < int(targets.min()) <= int(targets.max()) < table.size(0):
        raise IndexError(f"targets must be items 1..{table.size(0) - 1}")
    nll = torch.empty(rows, dtype=torch.float64)
    grad_hidden = torch.empty(rows, dim, dtype=torch.float32)
    grad_table = torch.empty(table.shape, dtype=torch.float32)
    done = library().ce_forward(
        torch.get_num_threads(),
        rows,
        table.size(0),
        dim,
        hidden.data_ptr(),
        table.data_ptr(),
        targets.data_ptr(),
        nll.data_ptr(),
        grad_hidden.data_ptr(),
        grad_table.data_ptr(),
    )
    if done != 0:
        raise MemoryError(f"cross-entropy kernel: no memory for {table.size(0)} items x {dim}")
    return nll, grad_hidden, grad_table
