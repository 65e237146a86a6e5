"""Run directories: what a training run leaves behind (read back by training/rescore.py).

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line
per epoch), ``model.safetensors`` (best weights), ``final.json`` (validation and test
metrics), ``router.json`` (routing statistics of MoE models), ``tensorboard/``, and what
serving needs without the raw data: ``dataset/`` (the prepared sequences and id maps)
and ``items.json`` (item metadata such as titles, when the dataset has them), and
``test_ranks.npy`` (each user's test rank, by internal user id, for paired comparisons).

While it trains, the run lives in ``RUN_DIR.partial/`` with an end-of-epoch checkpoint;
``train(..., resume=True)`` continues an interrupted run from there, and only a finished
run is renamed to ``RUN_DIR``, with ``checksums.json`` recording the SHA-256 of its files
(verified when they are read back). A run that fails or is interrupted before its first
checkpoint removes ``RUN_DIR.partial/``; one killed outright (SIGKILL, power loss) cannot,
and the next run with the same ``RUN_DIR`` removes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hymoerec import runtime
from hymoerec.artifacts import (
    ArtifactError,
    describe,
    read_yaml_mapping,
    write_atomic,
    write_checksums,
    write_text_atomic,
)
from hymoerec.config import (
    DataConfig,
    RunConfig,
    TrainConfig,
    prepare_dataset,
    to_dict,
)
from hymoerec.data import cache, registry
from hymoerec.data.metadata import load_metadata
from hymoerec.data.protocol import SequenceData
from hymoerec.data.registry import Source
from hymoerec.evaluation.evaluator import FactorScorer
from hymoerec.evaluation.metrics import DEFAULT_METRICS
from hymoerec.evaluation.seen import SeenFit, fit_seen_penalty
from hymoerec.models import build_model, config_class
from hymoerec.models.base import SequentialModel
from hymoerec.rundir import (
    DATASET_DIR,
    ITEMS,
    WEIGHTS,
    save_weights,
)
from hymoerec.schema import ConfigError
from hymoerec.training.checkpoint import CHECKPOINT, load_checkpoint
from hymoerec.training.distributed import (
    World,
    barrier,
    init_process_group,
    shutdown,
    world_from_env,
)
from hymoerec.training.loop import (
    EpochRecord,
    fit,
    resolve_device,
    seed_everything,
)

# finished runs read back, re-exported: hymoerec.training.run is their public home
from hymoerec.training.rescore import evaluate_run as evaluate_run
from hymoerec.training.rescore import load_run as load_run
from hymoerec.training.rescore import run_penalty as run_penalty
from hymoerec.training.validation import validate

TEST_RANKS = "test_ranks.npy"
log = logging.getLogger(__name__)
# the files of a finished run whose checksums are recorded
CHECKED = ("config.yaml", WEIGHTS, ITEMS, "final.json", "metrics.jsonl", "router.json", TEST_RANKS)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``kept`` is the RUN_DIR.partial/ left to resume, if any."""

    def __init__(self, kept: Path | None) -> None:
        super().__init__()
        self.kept = kept


def partial_dir(run_dir: Path) -> Path:
    """Where ``run_dir`` is built while it trains: a fixed name, so a resumed run finds it."""
    return run_dir.with_name(f"{run_dir.name}.partial")


def load_data(config: RunConfig) -> tuple[Source, SequenceData]:
    return prepare_dataset(config.dataset, config.data)


def history_length(config: RunConfig, source: Source) -> int:
    """``train.max_len``, else the dataset's default (200 for MovieLens, 50 otherwise)."""
    if config.train.max_len:
        return config.train.max_len
    log.info(
        "history length %d: the default for %s (format %s); train.max_len sets another",
        source.max_len,
        source.name,
        source.format,
    )
    return source.max_len


def resolved_data(config: RunConfig, source: Source) -> tuple[str, dict[str, Any]]:
    """The dataset and data options as a run records them: absolute paths, so the run
    directory works from any working directory, and for a file the format, columns and
    separator that were recognised, so its reading is written down."""
    data = to_dict(config.data)
    data["data_dir"] = str(registry.data_dir(config.data.data_dir).resolve())
    data["cache_dir"] = str(cache.cache_dir(config.data.cache_dir).resolve())
    if config.dataset in registry.DATASETS:
        return config.dataset, data
    data["format"] = source.format
    for key, value in source.options.items():
        if key in data:
            data[key] = "" if key == "time_col" and value is None else value
    return str(source.path.resolve()), data


def model_options(config: RunConfig, max_len: int) -> dict[str, Any]:
    """The model's options; a position table not sized explicitly fits the history length."""
    options = dict(config.model_options)
    fields = {f.name for f in dataclasses.fields(config_class(config.model))}
    if "max_len" in fields and "max_len" not in options:
        options["max_len"] = max_len
    return options


def _summary_tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(
    config: RunConfig, run_dir: Path, progress: bool = True, resume: bool = False
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (written atomically: built in ``RUN_DIR.partial``
    and renamed into place when the run ends, so ``run_dir`` is never half-written).

    A run that fails after its first epoch keeps ``RUN_DIR.partial`` and its checkpoint;
    ``resume=True`` continues it and ends with the metrics of an uninterrupted run.
    Under ``torchrun`` every process calls this and trains data-parallel; only rank 0
    validates, tests and writes ``run_dir``, and the other ranks return an empty dict."""
    world = world_from_env()
    if world.distributed and resume:
        raise ConfigError("resume works for single-process runs only, not under torchrun")
    init_process_group(world, resolve_device(config.train.device, world))
    try:
        return _train(config, run_dir, progress, world, resume)
    finally:
        shutdown(world)


def _resolved(
    config: RunConfig, model: SequentialModel, max_len: int, source: Source
) -> dict[str, Any]:
    resolved = to_dict(config)
    resolved["dataset"], resolved["data"] = resolved_data(config, source)
    resolved["model_options"] = dataclasses.asdict(model.config)
    resolved["train"]["max_len"] = max_len
    return resolved


def _defaults(model: str) -> dict[str, Any]:
    """Every option's default, in the layout of a resolved config."""
    defaults = {
        "model_options": dataclasses.asdict(config_class(model)()),
        "train": dataclasses.asdict(TrainConfig()),
        "data": dataclasses.asdict(DataConfig()),
    }
    loaded: dict[str, Any] = yaml.safe_load(yaml.safe_dump(defaults))
    return loaded


def _with_defaults(saved: Any, defaults: Any) -> Any:
    """``saved`` with the options it predates filled in at their defaults: a run
    interrupted before an option existed resumes, as the option's default keeps the
    behaviour it was started with."""
    if not isinstance(saved, dict) or not isinstance(defaults, dict):
        return saved
    filled = {key: _with_defaults(value, defaults.get(key)) for key, value in saved.items()}
    for key, value in defaults.items():
        filled.setdefault(key, value)
    return filled


def _partial(run_dir: Path, resolved: dict[str, Any], resume: bool) -> tuple[Path, bool]:
    """The in-progress directory and whether it holds a checkpoint to continue from."""
    partial = partial_dir(run_dir)
    if partial.exists() and not (partial / CHECKPOINT).is_file():
        shutil.rmtree(partial)  # killed before its first epoch ended: nothing to keep
    if not partial.exists():
        partial.mkdir()
        return partial, False
    if not resume:
        raise ConfigError(
            f"{partial} holds an interrupted run: continue it with the same command and "
            f"--resume, or delete {partial} to start again"
        )
    for stray in partial.glob(".*.tmp"):  # a write cut short (a full disk, a kill)
        stray.unlink()
    saved = _with_defaults(read_yaml_mapping(partial / "config.yaml"), _defaults(resolved["model"]))
    current = yaml.safe_load(yaml.safe_dump(resolved))  # compared as YAML sees them
    for config in (saved, current):  # where the files lie is no part of the run
        for key in ("data_dir", "cache_dir"):
            config["data"].pop(key, None)
    if saved != current:
        raise ConfigError(f"{partial} was started with another config; delete it to restart")
    return partial, True


def _train(
    config: RunConfig, run_dir: Path, progress: bool, world: World, resume: bool
) -> dict[str, Any]:
    if run_dir.exists():
        raise ConfigError(f"run directory {run_dir} already exists; choose another --out")
    # bf16 = auto is decided here, so that config.yaml records what the run used
    bf16 = runtime.resolve_bf16(config.train.bf16, resolve_device(config.train.device, world))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, bf16=bf16))
    if not world.is_main:
        barrier(world)  # rank 0 prepares and caches the dataset; the others then load it
    source, data = load_data(config)
    if world.is_main:
        barrier(world)
    max_len = history_length(config, source)
    seed_everything(config.train.seed)  # the initial weights are part of the seeded run
    model = build_model(config.model, model_options(config, max_len), data.num_items)
    if not world.is_main:
        fit(model, data, config.train, max_len, progress=False, world=world)
        return {}

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    resolved = _resolved(config, model, max_len, source)
    tmp, resuming = _partial(run_dir, resolved, resume)
    checkpoint = tmp / CHECKPOINT
    try:
        if not resuming:
            write_text_atomic(tmp / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
            meta: dict[str, object] = {"source": str(source.path), "name": source.name}
            cache.save(data, tmp / DATASET_DIR, meta)
            metadata = load_metadata(source)
            metadata = {i: metadata[i] for i in data.item_ids.external.tolist() if i in metadata}
            if metadata:
                write_text_atomic(tmp / ITEMS, json.dumps(metadata, ensure_ascii=False))
        writer = _summary_tensorboard(tmp)
        log = (tmp / "metrics.jsonl").open("w")
        if resuming:  # the checkpoint's epochs; a line written after it was saved is dropped
            history = load_checkpoint(checkpoint)["history"]
            log.writelines(json.dumps(record) + "\n" for record in history)
            log.flush()

        def on_epoch(record: EpochRecord, _: SequentialModel) -> None:
            log.write(json.dumps(dataclasses.asdict(record)) + "\n")
            log.flush()
            if writer is not None:
                writer.add_scalar("train/loss", record.loss, record.epoch)
                writer.add_scalar("train/aux_loss", record.aux_loss, record.epoch)
                writer.add_scalar(
                    "train/targets_per_second", record.targets_per_second, record.epoch
                )
                for name, value in record.valid.items():
                    writer.add_scalar(f"valid/{name}", value, record.epoch)
                for layer, alpha in enumerate(record.alpha):
                    writer.add_scalar(f"moe/alpha_layer{layer}", alpha, record.epoch)

        result = fit(model, data, config.train, max_len, on_epoch, progress, world, checkpoint)
        log.close()
        if writer is not None:
            writer.close()
        save_weights(model.state_dict(), tmp / WEIGHTS)
        device = resolve_device(config.train.device, world)
        seen = fit_run_penalty(model, data, max_len, config.train, device)
        penalty = seen.penalty if seen is not None else 0.0
        test = validate(model, data, "test", max_len, config.train, device, seen_penalty=penalty)
        write_atomic_npy(tmp / TEST_RANKS, test.ranks)
        protocol = "full ranking, history items ranked"
        if seen is not None:
            protocol += f", seen items penalised by {seen.penalty:.4g} (train.seen_penalty)"
        final: dict[str, Any] = {
            "model": config.model,
            "dataset": source.name,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped": result.stopped,
            "train_seconds": round(result.train_seconds, 2),
            "protocol": protocol,
            "valid": result.best_valid,
            "test": test.summary(DEFAULT_METRICS),
        }
        if seen is not None:
            # JSON has no infinity: an infinite penalty is written as the string "inf"
            fitted = dataclasses.asdict(seen)
            final["seen_penalty"] = {k: v if math.isfinite(v) else "inf" for k, v in fitted.items()}
            final["valid_without_penalty"] = final["valid"]
            final["valid"] = validate(
                model, data, "valid", max_len, config.train, device, seen_penalty=penalty
            ).summary()
        write_text_atomic(tmp / "final.json", json.dumps(final, indent=2))
        if result.history and result.history[-1].expert_share:
            router = [
                {"epoch": r.epoch, "alpha": r.alpha, "expert_share": r.expert_share}
                for r in result.history
            ]
            write_text_atomic(tmp / "router.json", json.dumps(router, indent=2))
        write_checksums(tmp, CHECKED)
        os.rename(tmp, run_dir)
    except BaseException as error:
        kept = checkpoint.is_file()
        if not kept:  # nothing to resume from: leave nothing behind
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            raise TrainingInterrupted(tmp if kept else None) from None
        if isinstance(error, OSError):  # e.g. a full disk while appending to metrics.jsonl
            raise ArtifactError(f"{error.filename or tmp}: {describe(error)}") from None
        raise
    # the run is complete without it; a kill before this line leaves only a stray file
    (run_dir / CHECKPOINT).unlink()
    return final


def fit_run_penalty(
    model: SequentialModel,
    data: SequenceData,
    max_len: int,
    config: TrainConfig,
    device: torch.device,
) -> SeenFit | None:
    """The learned penalty on seen items (``train.seen_penalty``), fitted on validation."""
    if not config.seen_penalty:
        return None
    model.eval()
    scorer = FactorScorer(model.next_item_hidden, model.item_weights())
    with torch.no_grad():
        return fit_seen_penalty(scorer, data, max_len, batch_size=config.eval_batch_size)


def write_atomic_npy(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, array))
