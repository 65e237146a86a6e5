"""Seconds per epoch, targets per second, peak memory and evaluation time per model.

    python benchmarks/train_speed.py --dataset ml-1m --models hymoerec mamba4rec sasrec
    python benchmarks/train_speed.py --models hymoerec --set bucket=0 --set loss=ce  # ablate

Training settings come from configs/DATASET-MODEL.yaml when it exists (else TrainConfig's
defaults). Each model runs in a fresh interpreter (so peak memory is its own): one full training
epoch through the library's Trainer (all positions, every training target), then a full
ranking of every user's validation target. ``--set`` overrides TrainConfig fields, to
show what each speed-up contributes.

Time to quality comes from finished runs instead: ``--runs RUN [RUN ...]`` reads each run
directory's metrics.jsonl, or the per-epoch curves of a ``hymoerec reproduce`` record
(results/*.json), and prints the wall time to validation NDCG@10 of 0.10 and 0.15.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml


def measure(model_name: str, dataset: str, data_dir: str, overrides: list[str]) -> dict:
    import torch

    from hymoerec.config import TrainConfig, apply_overrides, from_dict
    from hymoerec.data.cache import load_dataset
    from hymoerec.models import build_model, config_class
    from hymoerec.training.loop import Trainer, validate

    source, data = load_dataset(dataset, data_dir)
    # the training settings of the model's run config (configs/DATASET-MODEL.yaml) if any
    config_file = Path(__file__).resolve().parents[1] / "configs" / f"{dataset}-{model_name}.yaml"
    base = yaml.safe_load(config_file.read_text()).get("train", {}) if config_file.is_file() else {}
    train_config = from_dict(TrainConfig, apply_overrides(base, overrides))
    max_len = train_config.max_len or source.max_len
    options = (
        {"max_len": max_len}
        if "max_len" in {f for f in config_class(model_name).__dataclass_fields__}
        else {}
    )
    torch.manual_seed(train_config.seed)
    model = build_model(model_name, options, data.num_items)
    trainer = Trainer(model, data, train_config, max_len)
    stats = trainer.run_epoch()
    begin = time.perf_counter()
    validate(model, data, "valid", max_len, train_config, trainer.device)
    evaluation = time.perf_counter() - begin
    return {
        "model": model_name,
        "batch_size": train_config.batch_size,
        "batches": stats.steps,
        "epoch_s": stats.seconds,
        "targets": stats.targets,
        "targets_per_s": stats.targets / stats.seconds,
        "eval_s": evaluation,
        "users": data.num_users,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def curve(run: Path, split: str) -> tuple[str, list[tuple[int, float, float]], bool] | None:
    """(model, [(epoch, wall seconds, validation NDCG@10)], estimated) of a run directory or
    of a ``hymoerec reproduce`` record (results/*.json), None when the split was not logged.
    Records written before ``elapsed_by_epoch`` existed give the seconds as epoch x their mean
    epoch time, flagged as estimated."""
    if run.suffix == ".json":
        record = json.loads(run.read_text())
        key = "valid_ndcg10_by_epoch" if split == "valid" else f"{split}_ndcg10_by_epoch"
        if key not in record:
            return None
        values = record[key]
        estimated = "elapsed_by_epoch" not in record
        per_epoch = record["train_seconds"] / record["epochs_run"]
        elapsed = record.get("elapsed_by_epoch") or [
            e * per_epoch for e in range(1, len(values) + 1)
        ]
        points = [(e + 1, elapsed[e], v) for e, v in enumerate(values)]
        return record["model"], points, estimated
    lines = (run / "metrics.jsonl").read_text().splitlines()
    logged = [r for r in map(json.loads, lines) if r.get(split)]
    if not logged:
        return None
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]
    return model, [(r["epoch"], r["elapsed"], r[split]["NDCG@10"]) for r in logged], False


def time_to_quality(
    runs: list[Path], thresholds: tuple[float, ...] = (0.10, 0.15), split: str = "valid"
) -> None:
    """Per run: wall seconds and epochs to each validation NDCG@10 threshold, best value.

    Wall seconds include validation and whatever else ran on the machine at the time;
    epochs do not depend on the machine (multiply by the benchmark's s/epoch). ``split``
    "valid_history_excluded" reads the rankings with the history taken out, which runs
    log with ``train.valid_history_excluded=true``. A run is a run directory or its record.
    """
    header = " | ".join(f"s (epoch) to {t:.2f}" for t in thresholds)
    print(f"{'run':<40} | {'model':<10} | {header} | best NDCG@10 (epoch) | epochs")
    any_estimated = False
    for run in runs:
        found = curve(run, split)
        name = run.stem if run.suffix == ".json" else run.name
        if found is None:
            print(f"{name:<40} | no {split} NDCG@10 per epoch")
            continue
        model, points, estimated = found
        any_estimated |= estimated
        mark = "~" if estimated else ""
        reached = []
        for threshold in thresholds:
            hit = next((p for p in points if p[2] >= threshold), None)
            cell = f"{mark}{hit[1]:.0f} ({hit[0]})" if hit is not None else "never"
            reached.append(f"{cell:>{len('s (epoch) to 0.00')}}")
        best = max(points, key=lambda p: p[2])
        best_cell = f"{best[2]:.4f} ({best[0]})"
        print(f"{name:<40} | {model:<10} | {' | '.join(reached)} | {best_cell:>20} | {len(points)}")
    if any_estimated:
        print("~ seconds estimated as epoch x the run's mean epoch time (record without times)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--models", nargs="+", default=["hymoerec", "mamba4rec", "sasrec"])
    parser.add_argument("--set", action="append", default=[], help="TrainConfig KEY=VALUE")
    parser.add_argument(
        "--runs", nargs="+", type=Path, help="time to quality of run directories or records"
    )
    parser.add_argument(
        "--thresholds", default="0.10,0.15", help="validation NDCG@10 levels for --runs"
    )
    parser.add_argument(
        "--split",
        default="valid",
        choices=["valid", "valid_history_excluded"],
        help="which validation ranking --runs reads",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.runs:
        thresholds = tuple(float(t) for t in args.thresholds.split(","))
        time_to_quality(args.runs, thresholds, args.split)
        return
    if args.child:
        print(json.dumps(measure(args.child, args.dataset, args.data_dir, args.set)))
        return
    print(f"{args.dataset}, one full epoch, overrides: {args.set or 'none'}")
    print(
        f"{'model':<10} {'batch':>5} {'batches':>7} {'s/epoch':>8} {'targets':>9} "
        f"{'targets/s':>10} {'eval s':>7} {'peak GB':>8}"
    )
    for model in args.models:
        command = [
            sys.executable,
            __file__,
            "--child",
            model,
            "--dataset",
            args.dataset,
            "--data-dir",
            args.data_dir,
        ]
        for item in args.set:
            command += ["--set", item]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['model']:<10} {r['batch_size']:>5} {r['batches']:>7} {r['epoch_s']:>8.1f} "
            f"{r['targets']:>9,} {r['targets_per_s']:>10,.0f} {r['eval_s']:>7.2f} "
            f"{r['peak_rss_gb']:>8.2f}"
        )


if __name__ == "__main__":
    main()
