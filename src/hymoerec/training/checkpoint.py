"""End-of-epoch checkpoints, so that a run killed at any moment resumes where it stopped.

A checkpoint is one file written atomically: the state goes to a temporary file beside
the target, is flushed to disk (``fsync``), and then replaces the target in one
``os.replace``. A kill during the write leaves the previous checkpoint intact, so the
file on disk is always a complete end-of-epoch state (or absent); a failed write (a full
disk) removes its temporary file and names the checkpoint in its error.

The file is ``torch.save``'s bytes followed by a trailer holding their SHA-256, which
loading checks first: a truncated or damaged checkpoint is reported, never resumed from.
It is loaded with ``weights_only=True``: it holds only tensors and plain Python values
(random-generator states, the epoch history as dicts), so no pickled code ever runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hymoerec.artifacts import ArtifactError, describe, reason, write_atomic

CHECKPOINT = "checkpoint.pt"
_TRAILER = b"HYMOEREC-SHA256:"  # then the 32-byte digest of everything before it


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically and durably, with its checksum."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).digest()

    def write(handle: Any) -> None:
        handle.write(payload)
        handle.write(_TRAILER + digest)

    write_atomic(path, write)
    # the rename itself is durable only once the directory entry is on disk
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint`; ArtifactError if the file is damaged."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ArtifactError(f"{path}: cannot read: {describe(error)}") from None
    size = len(_TRAILER) + hashlib.sha256().digest_size
    payload, trailer = content[:-size], content[-size:]
    if len(content) < size or not trailer.startswith(_TRAILER):
        raise ArtifactError(
            f"{path}: not a complete checkpoint ({len(content):,} bytes, no checksum at its "
            "end: truncated, or not written by hymoerec)"
        )
    if hashlib.sha256(payload).digest() != trailer[len(_TRAILER) :]:
        raise ArtifactError(f"{path}: checksum mismatch: the checkpoint is damaged")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise ArtifactError(f"{path}: not a readable checkpoint ({reason(error)})") from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{path}: not a checkpoint (holds {type(state).__name__})")
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
