"""Train one of our models with the parity hyperparameters and score it with our
evaluator: both rankings and the history share of the top 10.

    python benchmarks/parity/run_ours.py --dataset ml-100k --model sasrec --seed 1 \
        --epochs 50 --data-dir ../shared/data

Writes results/parity/DATASET--MODEL--ours--seedN.json (and the per-user test ranks).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import harness

from hymoerec.config import DataConfig, RunConfig, TrainConfig
from hymoerec.evaluation.evaluator import FactorScorer
from hymoerec.training.run import load_run, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.run_arguments(parser)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs", type=Path, default=harness.ROOT / "runs" / "parity")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a train option (e.g. batch_size=256); the record names each one",
    )
    parser.add_argument("--tag", default="ours", help="implementation name in the record")
    args = parser.parse_args()

    options = dict(harness.TRAIN[args.dataset])
    for item in args.set:
        key, _, value = item.partition("=")
        options[key] = type(getattr(TrainConfig(), key))(value)
    train_config = TrainConfig(**options, epochs=args.epochs, seed=args.seed)
    config = RunConfig(
        model=args.model,
        dataset=args.dataset,
        model_options=harness.model_options(args.dataset, args.model),
        train=train_config,
        data=DataConfig(data_dir=args.data_dir),
    )
    name = harness.record_name(args.dataset, args.model, args.tag, args.seed)
    run_dir = args.runs / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    begin = time.perf_counter()
    final = train(config, run_dir, progress=False)
    train_seconds = time.perf_counter() - begin
    _, model, data = load_run(run_dir)
    model.eval()
    max_len = options["max_len"]
    scorer = FactorScorer(model.next_item_hidden, model.item_weights())
    report = harness.score(scorer, data, max_len)
    record = {
        "dataset": args.dataset,
        "model": args.model,
        "implementation": args.tag,
        "seed": args.seed,
        "epochs": args.epochs,
        "epochs_run": final["epochs_run"],
        "best_epoch": final["best_epoch"],
        "train": options,
        "model_options": config.model_options,
        "wall_seconds": round(train_seconds, 1),
        "own_test": final["test"],
        **report,
        "command": harness.command(
            "python benchmarks/parity/run_ours.py",
            args,
            *(f"--set {s}" for s in args.set),
            *(["--tag", args.tag] if args.tag != "ours" else []),
        ),
    }
    harness.finish(record, name)


if __name__ == "__main__":
    main()
