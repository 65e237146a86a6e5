"""``hymoerec demo``: prepare a dataset, train HyMoERec briefly, show its metrics and a
user's top 10, and the commands that go further."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hymoerec.cli.options import (
    Commands,
    add_compute_options,
    add_dataset_options,
    run_overrides,
)
from hymoerec.cli.tables import (
    DEFAULT_METRICS,
    metrics_table,
    plural,
    recommendation_table,
    table,
)
from hymoerec.config import prepare_dataset

DEMO_EPOCHS = {"ml-100k": 15, "ml-1m": 3}


def cmd_demo(args: argparse.Namespace) -> None:
    from hymoerec.config import load_run_config
    from hymoerec.recommend import Recommender
    from hymoerec.training.run import train

    # one config for the statistics shown and the run trained: the same data options
    overrides = run_overrides(args)
    overrides["model"] = "hymoerec"
    overrides["dataset"] = args.dataset
    config = load_run_config(None, [], overrides)
    source, data = prepare_dataset(args.dataset, config.data)
    sizes = [[source.name, data.num_users, data.num_items, data.num_interactions]]
    print(table(["dataset", "users", "items", "interactions"], sizes))
    epochs = args.epochs if args.epochs is not None else DEMO_EPOCHS.get(source.name, 5)
    settings = [f"train.epochs={epochs}", "train.batch_size=32", "train.warmup_steps=100"]
    config = load_run_config(None, settings, overrides)
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / (f"demo-{source.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    print(f"\ntraining HyMoERec for {plural(epochs, 'epoch')} (a short demo run) ...")
    final = train(config, out, progress=True)
    print(f"\n{final['protocol']}; best epoch {final['best_epoch']} of {final['epochs_run']}")
    print(metrics_table({"valid": final["valid"], "test": final["test"]}, DEFAULT_METRICS))
    recommender = Recommender.load(out, config.train.device)
    user = data.users.external[0]
    history = recommender.user_history(user)
    print(f"\nuser {user}: {plural(len(history), 'interaction')}; the last five:")
    for item in history[-5:]:
        print(f"  {item}  {recommender.metadata.get(item, {}).get('title', '')}")
    print(f"top 10 for user {user} (seen items excluded):")
    print(recommendation_table(recommender.recommend_users([user], 10)[0]))
    config_file = Path("configs") / f"{source.name}-hymoerec.yaml"
    full = (
        f"--config {config_file}"
        if config_file.is_file()
        else f"--model hymoerec --dataset {args.dataset}"
    )
    print(
        "\nnext steps:\n"
        f"  full training:   hymoerec train {full} --data-dir {args.data_dir or '<data dir>'}\n"
        f"  recommend:       hymoerec recommend {out} --user {user}\n"
        f"  serve over HTTP: hymoerec serve {out} --port 8000   (API docs at /docs)\n"
        f"  curves:          hymoerec plot {out}"
    )


def add_parsers(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo", help="prepare a dataset, train HyMoERec briefly, show metrics and top-10"
    )
    demo.add_argument("dataset", nargs="?", default="ml-1m", help="ml-1m (default) or ml-100k")
    add_dataset_options(demo, positional=False)
    add_compute_options(demo)
    demo.add_argument("--epochs", type=int, help="training epochs (default 3 ML-1M, 15 ML-100K)")
    demo.add_argument("--out", help="run directory (default runs/demo-DATASET-TIME)")
    demo.set_defaults(handler=cmd_demo)
