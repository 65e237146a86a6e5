"""The chunked cross-entropy's softmax as a C kernel (``hymoerec/kernels/softmax.c``).

Unfused, each chunk of logits is written once more to mask the padding item, read three
times by torch's softmax, then gathered and logged for the targets' likelihoods (and
redone from a log-sum-exp where a probability underflows). The kernel does it in place,
one row per task on torch's threads: the largest logit, the exponentials into a float32
row buffer with their sum, the probabilities rounded once to the logits' dtype; and each
target's negative log-likelihood in float64 as log-sum-exp minus its logit, which never
underflows. ``kernels.use(True)`` (``train.native_kernels``) turns it on; elsewhere, and
where the kernel cannot be built (once warned), torch's softmax runs.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from hymoerec import kernels
from hymoerec.data.interactions import PAD

_state = {"failed": False}


@cache
def library() -> ctypes.CDLL:
    """softmax.c, built on first use; raises ``kernels.KernelUnavailable``."""
    lib = kernels.load("softmax")
    pointer = ctypes.c_void_p
    lib.softmax_nll.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    lib.softmax_nll.argtypes += [pointer, pointer, pointer, pointer]
    lib.softmax_nll.restype = None
    return lib


def native_softmax_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Replace ``logits`` (C, N + 1) by its softmax over items 1..N (item 0 gets 0) and
    return -log p(target) (R,) float64 of the first R rows, targets (R,), R <= C."""
    rows, columns = logits.shape
    threads = torch.get_num_threads()
    nll = torch.empty(rows, dtype=torch.float64)
    scratch = torch.empty(threads, columns, dtype=torch.float32)
    real = targets.numel()
    targets = F.pad(targets.to(torch.int64), (0, rows - real))  # the rest PAD, ignored
    library().softmax_nll(
        threads,
        int(logits.dtype == torch.bfloat16),
        rows,
        columns,
        logits.data_ptr(),
        targets.data_ptr(),
        nll.data_ptr(),
        scratch.data_ptr(),
    )
    return nll[:real]


def fits(logits: Tensor) -> bool:
    """Whether the kernel takes these logits."""
    return (
        kernels.enabled()
        and not _state["failed"]
        and logits.device.type == "cpu"
        and logits.dtype in (torch.float32, torch.bfloat16)
        and logits.dim() == 2
        and logits.size(1) > 1
        and logits.is_contiguous()
        and not logits.requires_grad
    )


def softmax_nll(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(softmax of ``logits`` (C, N + 1) over items 1..N with item 0 at 0, -log p(target)
    (R,) float64 of the first R rows) for targets (R,) in 1..N, R <= C. May overwrite
    ``logits``."""
    if fits(logits):
        try:
            return logits, native_softmax_nll(logits, targets)
        except kernels.KernelUnavailable as error:
            _state["failed"] = True
            kernels.warn_unavailable("softmax kernel", error, "running torch's softmax")
    logits[:, PAD] = -torch.inf
    probs = torch.softmax(logits, dim=1)  # (C, N + 1) one fused pass per row
    real = targets.numel()
    return probs, _target_nll(probs[:real], logits[:real], targets)


def _target_nll(probs: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
    """(C,) -log p(target) from the softmax; rows whose target probability underflows
    (a logit gap over ~87) take it from their float32 log-sum-exp instead."""
    p = probs.gather(1, targets[:, None]).squeeze(1).double()  # (C,)
    nll = -p.log()
    tiny = p < 1e-30
    if tiny.any():
        rows = logits[tiny].float()
        lse = torch.logsumexp(rows, dim=1) - rows.gather(1, targets[tiny, None]).squeeze(1)
        nll[tiny] = lse.double()
    return nll
