"""The files of a finished run directory that evaluation, recommendation and serving read
back: its config, its weights and its prepared dataset.

Each is checked against the checksums the run recorded when it finished (``checksums.json``;
runs written before it existed load unverified) and read with every failure turned into
one :class:`~hymoerec.artifacts.ArtifactError` that names the file and the problem: a
config that is not YAML or has unknown options, weights that are truncated, empty, not
safetensors, or whose tensors are missing, extra or of the wrong shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hymoerec.artifacts import (
    ArtifactError,
    describe,
    read_yaml_mapping,
    reason,
    verify_in,
    write_atomic,
)
from hymoerec.config import RunConfig
from hymoerec.schema import ConfigError, from_dict

if TYPE_CHECKING:
    import torch

    from hymoerec.data.protocol import SequenceData

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
DATASET_DIR = "dataset"  # the prepared sequences, so a run serves without the raw files
ITEMS = "items.json"


def check_run_dir(run_dir: Path) -> None:
    if not (run_dir / CONFIG).is_file() or not (run_dir / WEIGHTS).is_file():
        raise ArtifactError(f"{run_dir} is not a run directory (no {CONFIG} / {WEIGHTS})")


def read_config(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG
    verify_in(run_dir, CONFIG)
    try:
        return from_dict(RunConfig, read_yaml_mapping(path))
    except ConfigError as error:
        raise ArtifactError(f"{path}: {error}") from None


def read_items(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The run's item metadata ({} when it has none)."""
    import json

    path = run_dir / ITEMS
    if not path.is_file():
        return {}
    verify_in(run_dir, ITEMS)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(f"{path}: unreadable ({reason(error)})") from None
    if not isinstance(items, dict):
        raise ArtifactError(f"{path}: expected a mapping of item ids to metadata")
    return items


def read_dataset(run_dir: Path) -> SequenceData | None:
    """The run's own prepared dataset, or None for runs written before it was stored."""
    from hymoerec.data import cache

    directory = run_dir / DATASET_DIR
    if not (directory / "meta.json").is_file():
        return None
    return cache.load(directory)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state dict as safetensors, atomically (nothing under ``path`` on failure)."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    blob = save(tensors)
    write_atomic(path, lambda handle: handle.write(blob))


def load_weights(model: torch.nn.Module, run_dir: Path) -> None:
    """Load the run's weights into ``model``, which must hold exactly the same tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = run_dir / WEIGHTS
    verify_in(run_dir, WEIGHTS)
    try:
        tensors = load(path.read_bytes())
    except OSError as error:
        raise ArtifactError(f"{path}: cannot read: {describe(error)}") from None
    except (SafetensorError, ValueError, RuntimeError, OverflowError, MemoryError) as error:
        raise ArtifactError(f"{path}: not a readable safetensors file ({reason(error)})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = [f"missing tensor {missing[0]}"] if missing else []
        parts += [f"unexpected tensor {extra[0]}"] if extra else []
        count = len(missing) + len(extra)
        more = f" ({count} tensors differ)" if count > 1 else ""
        raise ArtifactError(f"{path}: {', '.join(parts)}{more}: not this model's weights")
    for name, tensor in tensors.items():
        wanted = expected[name]
        if tensor.shape != wanted.shape or tensor.dtype != wanted.dtype:
            got = f"{tuple(tensor.shape)} {tensor.dtype}"
            raise ArtifactError(
                f"{path}: tensor {name} is {got}, the model expects "
                f"{tuple(wanted.shape)} {wanted.dtype}"
            )
    model.load_state_dict(tensors)
