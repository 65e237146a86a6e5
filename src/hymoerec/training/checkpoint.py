"""End-of-epoch checkpoints, so that a run killed at any moment resumes where it stopped.

A checkpoint is one file written atomically: the state goes to a temporary file beside
the target, is flushed to disk (``fsync``), and then replaces the target in one
``os.replace``. A kill during the write leaves the previous checkpoint intact, so the
file on disk is always a complete end-of-epoch state (or absent).

It is loaded with ``weights_only=True``: it holds only tensors and plain Python values
(random-generator states, the epoch history as dicts), so no pickled code ever runs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically and durably."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    # the rename itself is durable only once the directory entry is on disk
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def rng_states(rng: np.random.Generator) -> dict[str, Any]:
    """Every random stream a training epoch draws from: batch order and masks (``rng``),
    dropout and sampled negatives (torch, on the CPU and each GPU), and Python's."""
    return {
        "numpy": rng.bit_generator.state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def restore_rng_states(rng: np.random.Generator, states: dict[str, Any]) -> None:
    rng.bit_generator.state = states["numpy"]
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
