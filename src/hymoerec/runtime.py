"""Where computation runs: the torch device, the number of CPU threads and whether
bfloat16 is used where a run leaves it to the machine (``train.bf16: null``).

Every command that computes goes through these functions, so the rules live here.

Threads. torch's own default spins one thread per logical CPU, which collapses when other
processes share the machine (an ML-1M epoch went from 62 s to 804 s next to one busy
process). The default here is::

    threads = min(physical cores we may use, CPUs in our affinity mask)
              - CPUs kept busy by other processes (the 1-minute load average, rounded)

divided among the processes of a ``torchrun`` job on this machine, and never below 1.
``--threads N`` (``train.threads``) overrides it, and so does ``OMP_NUM_THREADS`` when set
(an explicit choice, as torch itself honours it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: data commands start without it
    import torch

log = logging.getLogger(__name__)

DEVICES = "auto, cpu or cuda[:N]"
PRIMITIVE_CACHE = 8192  # oneDNN kernels kept (the default is 1,024)
CPUINFO = Path("/proc/cpuinfo")  # where native_bf16 reads the CPU's instruction sets


class DeviceError(ValueError):
    """A device that does not exist or that this torch build cannot use."""


def check_device_name(name: str) -> None:
    """Reject anything but auto, cpu, cuda and cuda:N, naming the option."""
    index = name.removeprefix("cuda:")
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and index.isdigit()):
        return
    raise DeviceError(f"device {name!r}: expected {DEVICES}")


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``name`` as a torch device; ``auto`` is cuda when available, else cpu. A CUDA device
    this torch cannot reach is an error naming the reason, not a traceback."""
    import torch

    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "has no CUDA support" if torch.version.cuda is None else "finds no GPU"
            raise DeviceError(
                f"device {name!r}: this torch ({torch.__version__}) {built}; use --device cpu"
            )
        if local_rank is not None:
            device = torch.device("cuda", local_rank)
        elif device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise DeviceError(f"device {name!r}: only {count} GPU(s) visible")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively: a GPU that supports bf16,
    or a CPU with the avx512_bf16 or amx_bf16 instructions (read from /proc/cpuinfo)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    try:
        flags = CPUINFO.read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_bf16(choice: bool | None, device: torch.device) -> bool:
    """``train.bf16`` decided: an explicit choice stands, null (auto) becomes
    ``native_bf16(device)``."""
    return native_bf16(device) if choice is None else choice


def physical_cores(cpus: set[int]) -> int:
    """How many physical cores the logical CPUs ``cpus`` belong to (hyper-threads
    counted once); the logical count where the topology is not readable."""
    cores = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def default_threads(
    cpus: set[int] | None = None,
    load: float | None = None,
    processes: int | None = None,
    cores: int | None = None,
) -> int:
    """The thread rule of this module's docstring: ``cpus`` the logical CPUs we may use,
    ``load`` the 1-minute load average, ``processes`` those of a torchrun job on this
    machine, ``cores`` the physical cores among ``cpus``; each defaults to this machine."""
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        cpus = cpus or set(range(os.cpu_count() or 1))
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if cores is None:
        cores = physical_cores(cpus)
    usable = min(cores, len(cpus))
    free = min(usable, len(cpus) - round(load))
    return max(1, free // max(1, processes))


def _omp_threads() -> int:
    """OMP_NUM_THREADS when it is a positive integer, else 0."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


def configure_threads(requested: int | None = None) -> int:
    """Set torch's CPU threads: ``requested`` when positive, else the default rule."""
    import torch

    if requested is not None and requested < 0:
        raise ValueError(f"--threads {requested}: must be positive (0 = automatic)")
    threads = requested or _omp_threads() or default_threads()
    # oneDNN (bf16 products on CPU) builds a kernel per product shape and keeps 1,024;
    # one epoch of variable-length batches needs more (read at its first product)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(PRIMITIVE_CACHE))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not requested:
        log.debug("torch CPU threads: %d (automatic; --threads overrides)", threads)
    return threads
