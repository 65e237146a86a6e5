"""Seconds of one validation ranking of every user, and of the two rankings training logs
each epoch (history kept and excluded), as separate passes and as one pass.

    python benchmarks/eval_speed.py --models hymoerec mamba4rec sasrec --set threads=2

Each model is built as ``benchmarks/train_speed.py`` builds it (``configs/DATASET-MODEL.yaml``,
``--set`` TrainConfig overrides, ``--bf16`` on or off; untrained weights cost the same),
takes one untimed ranking of each kind (compilation happens there), then the three are
timed in turn ``--repeats`` times; the medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from train_speed import build


def time_model(name: str, args: argparse.Namespace) -> None:
    from hymoerec.training.validation import validate, validate_rankings

    trainer, data, config, max_len = build(
        name, args.dataset, args.data_dir, args.set, args.bf16 == "true"
    )
    model, device = trainer.model, trainer.device
    runs = {
        "history kept": lambda: validate(model, data, "valid", max_len, config, device),
        "history excluded": lambda: validate(
            model, data, "valid", max_len, config, device, exclude_history=True
        ),
        "both, one pass": lambda: validate_rankings(
            model, data, "valid", max_len, config, device, (False, True)
        ),
    }
    times: dict[str, list[float]] = {label: [] for label in runs}
    for run in runs.values():
        run()
    for _ in range(args.repeats):
        for label, run in runs.items():
            begin = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - begin)
    median = {label: statistics.median(values) for label, values in times.items()}
    separate = median["history kept"] + median["history excluded"]
    print(
        f"{name}: {data.num_users:,} users; kept {median['history kept']:.2f} s, "
        f"excluded {median['history excluded']:.2f} s; both as two passes {separate:.2f} s, "
        f"as one pass {median['both, one pass']:.2f} s "
        f"({separate / median['both, one pass']:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["hymoerec"])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--set", action="append", default=[], help="TrainConfig KEY=VALUE")
    parser.add_argument("--bf16", choices=["true", "false"], default="true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 {args.bf16}")
    for name in args.models:
        time_model(name, args)


if __name__ == "__main__":
    main()
