"""The whole comparison as one resumable plan: every (dataset, model or ablation, seed)
run trained with ``configs/`` and summarised as one small JSON record in ``results/``.

A run whose record exists is skipped; a run interrupted at any moment continues from its
last end-of-epoch checkpoint (``train(..., resume=True)``), so rerunning the same command
after a crash, a reboot or ``kill -9`` finishes the plan with the results of an
uninterrupted one. Records hold no weights; the run directories (``runs/``) stay out of git.

Several ``hymoerec reproduce`` processes may work through the same plan at once (one per
core or GPU, or one per machine over a shared file system): each run is trained under a
lock file beside its directory, and a run locked by another process is passed over. The
operating system drops the lock when its holder dies, ``kill -9`` included, so a run left
behind by a dead process is taken up by the next one that reaches it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from filelock import FileLock, Timeout

from hymoerec.config import RunConfig, load_run_config
from hymoerec.record import (
    EXCLUDED,
    OUTSIDE,
    RANK_CODE,
    RECORD_FORMAT,
    code_version,
    curves,
    encode_ranks,
    machine,
    write_json,
)
from hymoerec.schema import ConfigError

log = logging.getLogger(__name__)

DATASETS = ("ml-1m", "amazon-beauty")
MODELS = ("narm", "gru4rec", "bert4rec", "sasrec", "mamba4rec", "hymoerec")
PAIRED = ("hymoerec", "mamba4rec")  # compared user by user, so trained with several seeds


@dataclass(frozen=True)
class Ablation:
    name: str
    about: str  # one line for the results table
    base: str  # the model whose dataset config it starts from
    overrides: tuple[str, ...]  # --set strings applied on top
    compare: str = "hymoerec"  # the model the results table measures it against


def load_ablations(path: Path) -> dict[str, Ablation]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"ablations file {path}: {error}") from None
    ablations = {}
    required, optional = {"about", "base", "set"}, {"compare"}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not required <= set(entry) <= required | optional:
            raise ConfigError(
                f"{path}: ablation {name!r} needs about, base and set (compare is optional)"
            )
        base, compare = entry["base"], entry.get("compare", Ablation.compare)
        for key, model in (("base", base), ("compare", compare)):
            if model not in MODELS:
                raise ConfigError(f"{path}: ablation {name!r} has unknown {key} {model!r}")
        ablations[name] = Ablation(name, entry["about"], base, tuple(entry["set"]), compare)
    return ablations


@dataclass(frozen=True)
class PlannedRun:
    dataset: str
    name: str  # the model, or the ablation's name
    model: str
    seed: int
    overrides: tuple[str, ...] = ()
    ablation: str | None = None

    @property
    def key(self) -> str:
        """File stem of the record and the run directory: unique within a plan."""
        return f"{self.dataset}--{self.name}--seed{self.seed}"


def make_plan(
    datasets: Sequence[str],
    models: Sequence[str],
    seeds: Sequence[int],
    baseline_seeds: Sequence[int],
    ablations: Sequence[Ablation] = (),
    ablation_seeds: Sequence[int] = (),
) -> list[PlannedRun]:
    """Runs in order: per dataset, the models, then the ablations. HyMoERec and Mamba4Rec
    get ``seeds`` (they are compared user by user), the other baselines ``baseline_seeds``.
    An ablation without overrides is its base model's run, planned once."""
    plan: list[PlannedRun] = []
    for dataset in datasets:
        for model in models:
            for seed in seeds if model in PAIRED else baseline_seeds:
                plan.append(PlannedRun(dataset, model, model, seed))
        for ablation in ablations:
            for seed in ablation_seeds:
                if ablation.overrides:
                    run = PlannedRun(
                        dataset,
                        ablation.name,
                        ablation.base,
                        seed,
                        ablation.overrides,
                        ablation.name,
                    )
                else:
                    run = PlannedRun(dataset, ablation.base, ablation.base, seed)
                if run not in plan:
                    plan.append(run)
    return plan


@dataclass(frozen=True)
class ReproduceOptions:
    configs: Path = Path("configs")  # holds DATASET-MODEL.yaml for every planned pair
    runs_dir: Path = Path("runs/reproduce")  # run directories and checkpoints (not in git)
    results: Path = Path("results")  # one JSON record per finished run (in git)
    data_dir: str | None = None
    max_minutes: float = 0.0  # training cap per run; 0 = the paper's early stopping alone
    device: str | None = None  # overrides train.device of the configs
    threads: int | None = None  # overrides train.threads of the configs
    data: dict[str, Any] = field(default_factory=dict)  # overrides of their data sections


def run_config(run: PlannedRun, options: ReproduceOptions) -> RunConfig:
    path = options.configs / f"{run.dataset}-{run.model}.yaml"
    if not path.is_file():
        raise ConfigError(f"no config for {run.model} on {run.dataset}: {path} is missing")
    settings = [*run.overrides, f"train.seed={run.seed}"]
    if options.max_minutes:
        settings.append(f"train.max_minutes={options.max_minutes}")
    if options.device:
        settings.append(f"train.device={options.device}")
    if options.threads:
        settings.append(f"train.threads={options.threads}")
    data = dict(options.data)
    if options.data_dir:
        data["data_dir"] = options.data_dir
    # merged key by key, so a config's own data section keeps its other keys
    return load_run_config(path, settings, {"data": data} if data else None)


def record_path(run: PlannedRun, options: ReproduceOptions) -> Path:
    return options.results / f"{run.key}.json"


def run_dir(run: PlannedRun, options: ReproduceOptions) -> Path:
    return options.runs_dir / run.key


def lock_path(run: PlannedRun, options: ReproduceOptions) -> Path:
    return options.runs_dir / f"{run.key}.lock"


def locked_elsewhere(run: PlannedRun, options: ReproduceOptions) -> bool:
    """Whether another process holds ``run``'s lock now, i.e. is training it."""
    path = lock_path(run, options)
    if not path.is_file():  # never taken: the lock file is made by its first holder
        return False
    try:
        with FileLock(path, timeout=0):
            return False
    except Timeout:
        return True


def execute(plan: Sequence[PlannedRun], options: ReproduceOptions, progress: bool) -> list[Path]:
    """Train every run of ``plan`` that has no record yet and that no other process is
    training; returns the records written."""
    from hymoerec.training.run import train

    code = code_version()  # the code this process imported, whatever is edited meanwhile
    written = []
    for number, run in enumerate(plan, start=1):
        where = f"[{number}/{len(plan)}] {run.key}"
        path = record_path(run, options)
        if path.is_file():
            log.info("%s: recorded in %s, skipped", where, path)
            continue
        options.runs_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path(run, options), timeout=0)  # taken at once or not at all
        try:
            lock.acquire()
        except Timeout:
            log.info("%s: another process is training it, skipped", where)
            continue
        try:
            if path.is_file():  # recorded by the process that held the lock until now
                log.info("%s: recorded in %s, skipped", where, path)
                continue
            directory = run_dir(run, options)
            if not (directory / "final.json").is_file():  # finished: only lacks its record
                log.info("%s: training into %s", where, directory)
                train(run_config(run, options), directory, progress, resume=True)
            write_json(path, make_record(run, directory, code))
        finally:
            lock.release()
        log.info("%s: recorded in %s", where, path)
        written.append(path)
    return written


def standing(run: PlannedRun, options: ReproduceOptions) -> tuple[str, str]:
    """Where ``run`` stands on disk: a one-word state for the plan's listing and, for a run
    that will resume, how far it got (epochs logged, best validation, hours spent)."""
    from hymoerec.training.checkpoint import CHECKPOINT
    from hymoerec.training.run import partial_dir

    if record_path(run, options).is_file():
        return "done", ""
    busy = locked_elsewhere(run, options)
    directory = run_dir(run, options)
    if (directory / "final.json").is_file():
        if busy:
            return "running", "finished training; its record is being written"
        return "trained", "finished training; the next `hymoerec reproduce` writes its record"
    partial = partial_dir(directory)
    if not (partial / CHECKPOINT).is_file():
        return ("running", "no checkpoint yet") if busy else ("to run", "")
    epochs = []
    for line in (partial / "metrics.jsonl").read_text().splitlines():
        try:
            epochs.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill; the resume drops it
            break
    state = "running" if busy else "resume"
    if not epochs:
        return state, "a checkpoint, no epoch logged yet"
    best = max(epochs, key=lambda epoch: epoch["valid"]["NDCG@10"])
    logged = f"{len(epochs)} epoch{'s' if len(epochs) != 1 else ''} logged"
    return state, (
        f"{logged}, best valid NDCG@10 {best['valid']['NDCG@10']:.4f}"
        f" at epoch {best['epoch']}, {epochs[-1]['elapsed'] / 3600:.1f} h so far"
    )


# Metrics of the same best weights with each user's history taken out of the ranking, the
# protocol of many published pipelines (RecBole's sequential full sort keeps the history).


def history_excluded(directory: Path) -> dict[str, dict[str, float]]:
    from hymoerec.training.run import evaluate_run

    report = evaluate_run(directory, exclude_history=True)
    return {EXCLUDED[0]: report["valid"], EXCLUDED[1]: report["test"]}


def rescore(options: ReproduceOptions) -> list[Path]:
    """Add the history-excluded metrics and the per-epoch curves to every record that lacks
    them, from its run directory; returns the records rewritten. A record whose run
    directory is gone is reported, not guessed."""
    rewritten = []
    for path in sorted(options.results.glob("*.json")):
        record = json.loads(path.read_text())
        scored = all(key in record for key in EXCLUDED)
        if scored and "elapsed_by_epoch" in record:
            continue
        directory = options.runs_dir / record["key"]
        if not (directory / "final.json").is_file():
            log.warning("%s: no finished run in %s to re-score, left as it is", path, directory)
            continue
        if not scored:
            record.update(history_excluded(directory))
        record.update(curves(directory))
        write_json(path, record)
        log.info("%s: history-excluded metrics and curves added", path)
        rewritten.append(path)
    return rewritten


def make_record(
    run: PlannedRun, directory: Path, code: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The summary of a finished run directory that goes into git."""
    from hymoerec.training.run import TEST_RANKS

    final = json.loads((directory / "final.json").read_text())
    config = yaml.safe_load((directory / "config.yaml").read_text())
    ranks = np.load(directory / TEST_RANKS)
    return {
        "format": RECORD_FORMAT,
        "key": run.key,
        "name": run.name,
        "model": run.model,
        "dataset": run.dataset,
        "seed": run.seed,
        "ablation": run.ablation,
        "overrides": list(run.overrides),
        "valid": final["valid"],
        "test": final["test"],
        **history_excluded(directory),
        "users": len(ranks),
        "test_rank_top10": encode_ranks(ranks),
        "rank_code": f"{RANK_CODE} = test rank 1-10, {OUTSIDE} = below the top 10",
        "best_epoch": final["best_epoch"],
        "epochs_run": final["epochs_run"],
        "stopped": final["stopped"],
        "max_minutes": config["train"]["max_minutes"],
        "capped": final["stopped"].startswith("time budget"),
        **curves(directory),
        "train_seconds": final["train_seconds"],
        "machine": machine(config["train"]["device"]),
        "code": code or code_version(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
    }
