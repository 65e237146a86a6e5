"""Data-parallel training on PyTorch's own engine (torchrun + DistributedDataParallel).

Every process builds the same global batch (same seed, same shuffling) and trains on its
strided share of the rows; DDP all-reduces the gradients. Only rank 0 validates, keeps
the best weights and writes the run directory; it broadcasts when to stop.

Under ``torchrun`` the environment names the process (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); without it the run is a single process and nothing here
communicates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process, 0..size - 1
    size: int = 1  # processes in the job
    local_rank: int = 0  # this process on its machine: which GPU it drives

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The process's place in a ``torchrun`` job; a single process without one."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    return World(
        rank=int(os.environ["RANK"]),
        size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_process_group(world: World, device: torch.device) -> None:
    """NCCL between GPUs, gloo between CPU processes; a no-op for a single process."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    # the other ranks wait in a collective while rank 0 validates, which on a large
    # catalogue can outlast the default timeout (10 minutes for NCCL)
    dist.init_process_group(
        backend, rank=world.rank, world_size=world.size, timeout=timedelta(hours=2)
    )


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    """Leave together: a gloo rank torn down while its peer still talks can abort."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_flag(flag: bool, world: World) -> bool:
    """Rank 0's ``flag`` on every rank (who decides to stop is rank 0, who validates)."""
    if not world.distributed:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())
