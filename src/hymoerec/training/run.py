"""Run directories: what a training run leaves behind, and re-scoring one.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line
per epoch), ``model.safetensors`` (best weights), ``final.json`` (validation and test
metrics), ``router.json`` (routing statistics of MoE models), ``tensorboard/``, and what
serving needs without the raw data: ``dataset/`` (the prepared sequences and id maps)
and ``items.json`` (item metadata such as titles, when the dataset has them), and
``test_ranks.npy`` (each user's test rank, by internal user id, for paired comparisons).

While it trains, the run lives in ``RUN_DIR.partial/`` with an end-of-epoch checkpoint;
``train(..., resume=True)`` continues an interrupted run from there, and only a finished
run is renamed to ``RUN_DIR``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from safetensors.torch import load_file, save_file

from hymoerec.config import ConfigError, DataConfig, RunConfig, TrainConfig, from_dict, to_dict
from hymoerec.data import cache
from hymoerec.data.cache import load_dataset
from hymoerec.data.metadata import load_metadata
from hymoerec.data.protocol import ProtocolConfig, SequenceData
from hymoerec.data.registry import Source
from hymoerec.evaluation.metrics import DEFAULT_METRICS
from hymoerec.models import build_model, config_class
from hymoerec.models.base import SequentialModel
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
    resolve_bf16,
    resolve_device,
    seed_everything,
    validate,
)

WEIGHTS = "model.safetensors"
DATASET_DIR = "dataset"  # the prepared sequences, so a run serves without the raw files
ITEMS = "items.json"
TEST_RANKS = "test_ranks.npy"


def partial_dir(run_dir: Path) -> Path:
    """Where ``run_dir`` is built while it trains: a fixed name, so a resumed run finds it."""
    return run_dir.with_name(f"{run_dir.name}.partial")


def load_data(config: RunConfig) -> tuple[Source, SequenceData]:
    protocol = ProtocolConfig(config.data.user_core, config.data.item_core, config.data.ties)
    return load_dataset(config.dataset, config.data.data_dir, config.data.cache_dir, protocol)


def history_length(config: RunConfig, source: Source) -> int:
    return config.train.max_len or source.max_len


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


def _resolved(config: RunConfig, model: SequentialModel, max_len: int) -> dict[str, Any]:
    resolved = to_dict(config)
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
        raise ConfigError(f"{partial} holds an interrupted run; resume it or delete it")
    saved = yaml.safe_load((partial / "config.yaml").read_text())
    current = yaml.safe_load(yaml.safe_dump(resolved))  # compared as YAML sees them
    if _with_defaults(saved, _defaults(resolved["model"])) != current:
        raise ConfigError(f"{partial} was started with another config; delete it to restart")
    return partial, True


def _train(
    config: RunConfig, run_dir: Path, progress: bool, world: World, resume: bool
) -> dict[str, Any]:
    if run_dir.exists():
        raise ConfigError(f"run directory {run_dir} already exists; choose another --out")
    # bf16 = auto is decided here, so that config.yaml records what the run used
    train = resolve_bf16(config.train, resolve_device(config.train.device, world))
    config = dataclasses.replace(config, train=train)
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
    resolved = _resolved(config, model, max_len)
    tmp, resuming = _partial(run_dir, resolved, resume)
    checkpoint = tmp / CHECKPOINT
    try:
        if not resuming:
            (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
            meta: dict[str, object] = {"source": str(source.path), "name": source.name}
            cache.save(data, tmp / DATASET_DIR, meta)
            metadata = load_metadata(source)
            metadata = {i: metadata[i] for i in data.item_ids.external.tolist() if i in metadata}
            if metadata:
                (tmp / ITEMS).write_text(json.dumps(metadata, ensure_ascii=False))
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
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(tmp / WEIGHTS),
        )
        device = resolve_device(config.train.device, world)
        test = validate(model, data, "test", max_len, config.train, device)
        np.save(tmp / TEST_RANKS, test.ranks)
        final = {
            "model": config.model,
            "dataset": source.name,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped": result.stopped,
            "train_seconds": round(result.train_seconds, 2),
            "protocol": "full ranking, history items ranked",
            "valid": result.best_valid,
            "test": test.summary(DEFAULT_METRICS),
        }
        (tmp / "final.json").write_text(json.dumps(final, indent=2))
        if result.history and result.history[-1].expert_share:
            router = [
                {"epoch": r.epoch, "alpha": r.alpha, "expert_share": r.expert_share}
                for r in result.history
            ]
            (tmp / "router.json").write_text(json.dumps(router, indent=2))
        os.rename(tmp, run_dir)
    except BaseException:
        if not checkpoint.is_file():  # nothing to resume from: leave nothing behind
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the run is complete without it; a kill before this line leaves only a stray file
    (run_dir / CHECKPOINT).unlink()
    return final


def load_run(run_dir: Path) -> tuple[RunConfig, SequentialModel, Source, SequenceData]:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file() or not (run_dir / WEIGHTS).is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml / {WEIGHTS})")
    config = from_dict(RunConfig, yaml.safe_load(config_path.read_text()))
    source, data = load_data(config)
    model = build_model(config.model, config.model_options, data.num_items)
    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    return config, model, source, data


def evaluate_run(run_dir: Path, exclude_history: bool = False) -> dict[str, dict[str, float]]:
    """Re-score a finished run on validation and test; with ``exclude_history`` the items
    of each user's history are taken out of the ranking (the paper's protocol keeps them)."""
    config, model, source, data = load_run(run_dir)
    device = resolve_device(config.train.device)
    model.to(device)
    max_len = history_length(config, source)
    begin = time.perf_counter()
    report = {
        split: validate(
            model, data, split, max_len, config.train, device, exclude_history=exclude_history
        ).summary()
        for split in ("valid", "test")
    }
    report["seconds"] = {"total": time.perf_counter() - begin}
    return report
