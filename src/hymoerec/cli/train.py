"""``hymoerec train`` and ``hymoerec evaluate``: a run directory from a config, and the
full-ranking metrics of a run or of a non-learned baseline."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hymoerec.cli.options import (
    Commands,
    add_compute_options,
    add_dataset_options,
    given_data_options,
    load,
    run_overrides,
)
from hymoerec.cli.tables import DEFAULT_METRICS, metrics_table, plural, table
from hymoerec.data.errors import DataError

BASELINE_NAMES = ("pop", "transition")


def cmd_train(args: argparse.Namespace) -> None:
    from hymoerec.config import load_run_config
    from hymoerec.training.run import train

    config = load_run_config(args.config, args.set or [], run_overrides(args))
    out = (
        Path(args.out)
        if args.out
        else Path("runs")
        / (f"{config.model}-{Path(config.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    final = train(config, out, progress=not args.quiet, resume=args.resume)
    if not final:  # a data-parallel rank other than 0: rank 0 reports
        return
    print(
        f"{config.model} on {final['dataset']}: best epoch {final['best_epoch']} of "
        f"{final['epochs_run']} ({final['stopped']}), {final['train_seconds']:.0f} s; "
        f"{final['protocol']}"
    )
    print(metrics_table({"valid": final["valid"], "test": final["test"]}, DEFAULT_METRICS))
    print(f"run directory: {out}")


def _protocol(exclude_history: bool) -> str:
    kept = "excluded" if exclude_history else "ranked"
    return f"full ranking, history items {kept}"


def cmd_evaluate(args: argparse.Namespace) -> None:
    from hymoerec.evaluation.metrics import parse_metric

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        parse_metric(m)
    if args.run_dir is not None:
        _evaluate_run(args, metrics)
    else:
        _evaluate_baseline(args, metrics)


def _evaluate_run(args: argparse.Namespace, metrics: list[str]) -> None:
    from hymoerec.rundir import read_config
    from hymoerec.training.run import evaluate_run, run_penalty

    if args.model is not None or args.dataset is not None:
        raise DataError("give either a run directory or --model and --dataset, not both")
    fixed = sorted(set(given_data_options(args)) - {"data_dir"})
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise DataError(
            f"{flags}: a run is evaluated on the data it was trained on (kept in the run "
            f"directory); these options apply to `evaluate --model ... --dataset ...`"
        )
    run_dir = Path(args.run_dir)
    report = evaluate_run(
        run_dir,
        args.exclude_history,
        metrics,
        args.max_len,
        args.batch_size,
        args.device,
        args.data_dir,
    )
    config = read_config(run_dir)
    protocol = _protocol(args.exclude_history)
    penalty = run_penalty(run_dir)
    if penalty:
        protocol += f", seen items penalised by {penalty:.4g} (train.seen_penalty)"
    if args.json:
        result = {
            "run": str(run_dir.resolve()),
            "model": config.model,
            "dataset": config.dataset,
            "protocol": protocol,
            "metrics": {split: report[split] for split in ("valid", "test")},
            "seconds": report["seconds"]["total"],
        }
        print(json.dumps(result, indent=2))
        return
    print(f"{args.run_dir}: {protocol}")
    print(metrics_table(report, metrics))


def _evaluate_baseline(args: argparse.Namespace, metrics: list[str]) -> None:
    from hymoerec.evaluation.baselines import BASELINES
    from hymoerec.evaluation.evaluator import evaluate
    from hymoerec.runtime import resolve_device

    if args.model is None or args.dataset is None:
        raise DataError("evaluate needs a run directory, or --model and --dataset")
    device = resolve_device(args.device or "cpu")
    source, data = load(args, args.dataset)
    scorer = BASELINES[args.model](data)
    max_len = args.max_len or source.max_len
    rows, report = [], {}
    for split in ("valid", "test"):
        result = evaluate(
            scorer,
            data,
            split,
            max_len,
            batch_size=args.batch_size or 1024,
            exclude_history=args.exclude_history,
            device=device,
            progress=True,
        )
        summary = result.summary(metrics)
        report[split] = summary
        rows.append([split, *summary.values()])
    protocol = _protocol(args.exclude_history)
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "dataset": source.name,
                    "protocol": protocol,
                    "metrics": report,
                },
                indent=2,
            )
        )
        return
    print(
        f"{args.model} on {source.name}: {protocol}, over {plural(data.num_items, 'item')}, "
        f"{plural(data.num_users, 'user')}"
    )
    print(table(["split", *metrics], rows))


def add_parsers(commands: Commands) -> None:
    tr = commands.add_parser("train", help="train a model into a run directory")
    tr.add_argument("--model", help="hymoerec, mamba4rec, sasrec, bert4rec, gru4rec, narm")
    tr.add_argument("--dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    tr.add_argument("--config", help="YAML run config (model, dataset, model_options, train, data)")
    tr.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one option, e.g. train.lr=0.002 or model_options.moe.top_k=1",
    )
    add_dataset_options(tr, positional=False)
    add_compute_options(tr)
    tr.add_argument("--out", help="run directory to create (default runs/MODEL-DATASET-TIME)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT.partial/ (its last end-of-epoch checkpoint)",
    )
    tr.set_defaults(handler=cmd_train)

    ev = commands.add_parser("evaluate", help="full-ranking evaluation on valid and test")
    ev.add_argument("run_dir", nargs="?", help="a run directory written by `hymoerec train`")
    ev.add_argument(
        "--model",
        choices=BASELINE_NAMES,
        help="a non-learned baseline (instead of a run directory)",
    )
    ev.add_argument("--dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    add_dataset_options(ev, positional=False)
    ev.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help="comma-separated metrics, e.g. HR@5,NDCG@10,MRR@20",
    )
    ev.add_argument(
        "--max-len",
        type=int,
        help="history length seen by the model (default: the run's; for --model the "
        "dataset's, 200 for MovieLens, 50 otherwise)",
    )
    ev.add_argument(
        "--batch-size", type=int, help="users scored at once (default: the run's; 1024)"
    )
    add_compute_options(ev)
    ev.add_argument(
        "--exclude-history",
        action="store_true",
        help="remove the user's history items from the ranking "
        "(default: keep them, as the paper's protocol does)",
    )
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(handler=cmd_evaluate)
