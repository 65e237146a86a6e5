"""Seconds per epoch, targets per second, evaluation time and peak memory per model,
float32 and bfloat16 side by side.

    python benchmarks/train_speed.py --dataset ml-1m --models hymoerec mamba4rec sasrec
    python benchmarks/train_speed.py --models hymoerec --fraction 0.25  # a quarter epoch
    python benchmarks/train_speed.py --models hymoerec --set bucket=0 --set loss=ce  # ablate
    python benchmarks/train_speed.py --models hymoerec --fast compile_scan=true  # bf16 + more
    python benchmarks/train_speed.py --models hymoerec --precision float32 \
        --set native_kernels=false --fast native_kernels=true  # one change, one precision
    OMP_NUM_THREADS=1 python benchmarks/train_speed.py --loss-only 6000,3416,64  # the loss alone

Training settings come from configs/DATASET-MODEL.yaml when it exists (else TrainConfig's
defaults); ``--set`` overrides TrainConfig fields of both sides, ``--fast`` those of the
bf16 side only (e.g. ``compile_scan=true``), to show what each speed-up contributes.
Each model runs in a fresh interpreter that builds two trainers from one seed, float32
and ``train.bf16``, and alternates them batch by batch through the same epoch (which
of the two goes first alternates too), so that both see the same load on a shared
machine; each first takes one untimed step and one untimed evaluation (compilation, if
any, happens there); the ratio is the median over ``--repeats`` consecutive blocks of
batches of
(float32 seconds / bf16 seconds). Evaluation ranks every user's validation target,
``--repeats`` times per precision, alternating; the median is printed. Peak memory is
the max RSS of a separate interpreter per precision that runs ``--memory-steps`` steps
of the longest batches and one evaluation.

Time to quality comes from finished runs instead: ``--runs RUN [RUN ...]`` reads each run
directory's metrics.jsonl, or the per-epoch curves of a ``hymoerec reproduce`` record
(results/*.json), and prints the wall time to validation NDCG@10 of 0.10 and 0.15.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

PRECISIONS = {"float32": False, "bf16": True}


def side_precisions(precision: str | None = None) -> dict[str, bool]:
    """Each side's name and whether it runs bf16: float32 against bf16, or with
    ``precision`` that one precision on both sides, the second with ``--fast``."""
    if precision is None:
        return dict(PRECISIONS)
    return {precision: PRECISIONS[precision], f"{precision}+fast": PRECISIONS[precision]}


def sides(
    overrides: list[str], fast: list[str], precision: str | None = None
) -> dict[str, list[str]]:
    """The overrides of each side: both get ``overrides``, the second also ``fast``."""
    names = list(side_precisions(precision))
    return {name: overrides + (fast if name == names[1] else []) for name in names}


def build(model_name: str, dataset: str, data_dir: str, overrides: list[str], bf16: bool):
    """(trainer, data, config, max_len) of one precision; same seed, same weights."""
    import torch

    from hymoerec.config import TrainConfig, apply_overrides
    from hymoerec.data.cache import load_dataset
    from hymoerec.models import build_model, config_class
    from hymoerec.schema import from_dict
    from hymoerec.training.loop import Trainer

    source, data = load_dataset(dataset, data_dir)
    # the training settings of the model's run config (configs/DATASET-MODEL.yaml) if any
    config_file = Path(__file__).resolve().parents[1] / "configs" / f"{dataset}-{model_name}.yaml"
    base = yaml.safe_load(config_file.read_text()).get("train", {}) if config_file.is_file() else {}
    base = {**base, "bf16": bf16}
    train_config = from_dict(TrainConfig, apply_overrides(base, overrides), "train.")
    max_len = train_config.max_len or source.max_len
    fields = set(config_class(model_name).__dataclass_fields__)
    options = {"max_len": max_len} if "max_len" in fields else {}
    torch.manual_seed(train_config.seed)
    model = build_model(model_name, options, data.num_items)
    return Trainer(model, data, train_config, max_len), data, train_config, max_len


def measure(
    model_name: str,
    dataset: str,
    data_dir: str,
    overrides: list[str],
    fraction: float,
    repeats: int,
    fast: list[str],
    precision: str | None = None,
) -> dict:
    """Both sides through one epoch (or its first ``fraction``), batch by batch."""
    from hymoerec.training.validation import validate

    extra = sides(overrides, fast, precision)
    runs = {
        name: build(model_name, dataset, data_dir, extra[name], bf16)
        for name, bf16 in side_precisions(precision).items()
    }
    base, other = runs
    for trainer, data, config, max_len in runs.values():  # untimed: compilation happens here
        trainer.train_batch(next(iter(trainer.sampler.epoch(trainer.rng))))
        validate(trainer.model, data, "valid", max_len, config, trainer.device)
    streams = {name: run[0].sampler.epoch(run[0].rng) for name, run in runs.items()}
    total = len(runs[base][0].sampler)
    count = max(1, round(fraction * total))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    targets = 0
    for index in range(count):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        for name in order:
            begin = time.perf_counter()
            batch = next(streams[name])
            runs[name][0].train_batch(batch)
            seconds[name].append(time.perf_counter() - begin)
        targets += batch.num_targets
    block = max(1, count // repeats)
    ratios = [
        sum(seconds[base][i : i + block]) / sum(seconds[other][i : i + block])
        for i in range(0, block * repeats if count >= repeats else count, block)
    ]
    evaluation: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(repeats):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        for name in order:
            trainer, data, config, max_len = runs[name]
            begin = time.perf_counter()
            validate(trainer.model, data, "valid", max_len, config, trainer.device)
            evaluation[name].append(time.perf_counter() - begin)
    trainer, data, config, _ = runs[base]
    result = {
        "model": model_name,
        "batch_size": config.batch_size,
        "batches": count,
        "of_batches": total,
        "targets": targets,
        "users": data.num_users,
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "eval_ratio": statistics.median(evaluation[base]) / statistics.median(evaluation[other]),
    }
    for name in runs:
        measured = sum(seconds[name])
        result[name] = {
            "epoch_s": measured * total / count,
            "targets_per_s": targets / measured,
            "eval_s": statistics.median(evaluation[name]),
        }
    return result


def loss_speed(
    targets: int, items: int, dim: int, repeats: int, chunks: tuple[int, ...] = ()
) -> dict[str, float]:
    """Median ms of one chunked-CE forward + backward, float32, bf16 and bf16 without its
    kernel (``ce_kernel``: the chunked bf16 products) alternating; with ``chunks``, the
    chunked bf16 products at each of those chunk sizes (targets per chunk) instead. The C
    kernels are on or off as ``train.native_kernels`` defaults (on)."""

    from hymoerec import kernels
    from hymoerec.config import TrainConfig

    with kernels.use(TrainConfig().native_kernels):
        return _loss_speed(targets, items, dim, repeats, chunks)


def _loss_speed(
    targets: int, items: int, dim: int, repeats: int, chunks: tuple[int, ...]
) -> dict[str, float]:
    import torch

    from hymoerec.training import ce_kernel
    from hymoerec.training.loss import chunked_softmax_ce

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(targets, dim, generator=g, requires_grad=True)
    weights = (0.3 * torch.randn(items + 1, dim, generator=g)).requires_grad_()
    labels = torch.randint(1, items + 1, (targets,), generator=g)
    # name: (bf16, chunk, the bf16 kernel of ce_kernel allowed)
    variants = (
        {f"bf16, chunk {c}": (True, c, False) for c in chunks}
        if chunks
        else {
            **{name: (bf16, None, True) for name, bf16 in PRECISIONS.items()},
            "bf16 products": (True, None, False),
        }
    )
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats + 1):  # the first round warms up
        for name, (bf16, chunk, fused) in variants.items():
            options = {"chunk": chunk} if chunk else {}
            begin = time.perf_counter()
            with (
                contextlib.nullcontext() if fused else ce_kernel.off(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
            ):
                loss = chunked_softmax_ce(hidden, weights, labels, **options)
            loss.backward()
            seconds[name].append(time.perf_counter() - begin)
    return {name: 1e3 * statistics.median(values[1:]) for name, values in seconds.items()}


def peak_memory(
    model_name: str, dataset: str, data_dir: str, overrides: list[str], bf16: bool, steps: int
) -> dict:
    """Max RSS of this process after ``steps`` steps on the longest batches and one evaluation."""
    from hymoerec.training.validation import validate

    trainer, data, config, max_len = build(model_name, dataset, data_dir, overrides, bf16)
    batches = list(trainer.sampler.epoch(trainer.rng))
    batches.sort(key=lambda b: -b.items.numel())
    for batch in batches[:steps]:
        trainer.train_batch(batch)
    validate(trainer.model, data, "valid", max_len, config, trainer.device)
    return {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


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


def child(args: argparse.Namespace, *extra: str) -> dict:
    command = [sys.executable, __file__, "--dataset", args.dataset, "--data-dir", args.data_dir]
    command += [*extra, "--fraction", str(args.fraction), "--repeats", str(args.repeats)]
    command += ["--memory-steps", str(args.memory_steps)]
    if args.precision:
        command += ["--precision", args.precision]
    for item in args.set:
        command += ["--set", item]
    for item in args.fast:
        command += ["--fast", item]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--models", nargs="+", default=["hymoerec", "mamba4rec", "sasrec"])
    parser.add_argument("--set", action="append", default=[], help="TrainConfig KEY=VALUE")
    parser.add_argument(
        "--fast", action="append", default=[], help="TrainConfig KEY=VALUE of the bf16 side"
    )
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="share of the epoch timed (extrapolated)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="blocks of batches / evaluations for the median"
    )
    parser.add_argument(
        "--memory-steps", type=int, default=10, help="steps of the peak-memory runs"
    )
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
    parser.add_argument(
        "--loss-only",
        metavar="TARGETS,ITEMS,DIM",
        help="time the chunked CE alone at these shapes (ML-1M step: 6000,3416,64)",
    )
    parser.add_argument(
        "--chunks", metavar="C,C,...", help="with --loss-only: bf16 at these chunk sizes"
    )
    parser.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        help="both sides in this precision, the second with --fast (default: float32 vs bf16)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.runs:
        thresholds = tuple(float(t) for t in args.thresholds.split(","))
        time_to_quality(args.runs, thresholds, args.split)
        return
    if args.loss_only:
        targets, items, dim = (int(v) for v in args.loss_only.split(","))
        chunks = tuple(int(c) for c in args.chunks.split(",")) if args.chunks else ()
        print(f"chunked CE, {targets} targets x {items} items x {dim}, forward + backward")
        print(f"load before: {load()}")
        ms = loss_speed(targets, items, dim, args.repeats, chunks)
        first = next(iter(ms.values()))
        for name, value in ms.items():
            print(f"{name:<16} {value:8.1f} ms per step  {first / value:.2f}x")
        print(f"load after: {load()}")
        return
    if args.child:
        result = measure(
            args.child,
            args.dataset,
            args.data_dir,
            args.set,
            args.fraction,
            args.repeats,
            args.fast,
            args.precision,
        )
        print(json.dumps(result))
        return
    if args.child_memory:
        name, side = args.child_memory.split(":")
        bf16 = side_precisions(args.precision)[side]
        overrides = sides(args.set, args.fast, args.precision)[side]
        memory = peak_memory(name, args.dataset, args.data_dir, overrides, bf16, args.memory_steps)
        print(json.dumps(memory))
        return
    share = "one full epoch" if args.fraction >= 1 else f"{args.fraction:.0%} of an epoch"
    base, other = side_precisions(args.precision)
    overrides = args.set or "none"
    print(f"{args.dataset}, {share}, {base} and {other} alternating, overrides: {overrides}")
    print(f"{other} side also: {args.fast or 'nothing'}")
    print(f"threads {os.environ.get('OMP_NUM_THREADS', 'default')}, load before: {load()}")
    print(
        f"{'model':<10} {'batch':>5} {'side':<12} {'s/epoch':>8} {'targets/s':>10} "
        f"{'eval s':>7} {'peak GB':>8} {'speed-up (median, range)':>26}"
    )
    for model in args.models:
        r = child(args, "--child", model)
        extrapolated = "" if r["batches"] == r["of_batches"] else "~"
        for name in (base, other):
            memory = child(args, "--child-memory", f"{model}:{name}")
            m = r[name]
            low, high = r["ratio_range"]
            ratio = (
                f"{r['ratio_median']:.2f}x ({low:.2f}-{high:.2f}), eval {r['eval_ratio']:.2f}x"
                if name == other
                else ""
            )
            print(
                f"{r['model']:<10} {r['batch_size']:>5} {name:<12} "
                f"{extrapolated + format(m['epoch_s'], '.1f'):>8} {m['targets_per_s']:>10,.0f} "
                f"{m['eval_s']:>7.2f} {memory['peak_rss_gb']:>8.2f} {ratio:>26}"
            )
    print(f"load after: {load()}")
    print("~ seconds per epoch extrapolated from the timed share of the batches")


def load() -> str:
    """The 1, 5 and 15-minute load averages (what else ran on the machine)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
