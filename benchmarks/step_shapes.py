"""What a training step costs besides its tokens: the shapes of its products.

    python benchmarks/step_shapes.py --model hymoerec --batches 120
    python benchmarks/step_shapes.py --model hymoerec --batches 120 --set bf16=false

On a CPU, bf16 products go through oneDNN, which builds a kernel for every new shape of
product (about 0.3 ms each) and keeps 1,024 of them by default. A run whose batches
vary in length, whose experts get a different number of tokens every step and whose
loss ends on a chunk of any size meets new shapes all the time. The library rounds
those three sizes up (``training.batches.LENGTH_MULTIPLE``, ``models.moe.GROUP_ROWS``,
``training.loss.CHUNK_ROWS``) and raises oneDNN's cache (``runtime.PRIMITIVE_CACHE``).

This builds two trainers of one seed and settings, one with the three sizes at 1 (every
shape as it comes) and one as shipped, and alternates them batch by batch through the
start of an epoch (which goes first alternates too), so that both see the same load.
Per side it prints the seconds of the timed batches, a least-squares fit of a step's
seconds as ``fixed + per_token * tokens`` (tokens: the batch's B x L), and the epoch
that the mean step makes; then the ratio of the two sides' seconds. Both sides share the
process's oneDNN cache, so the cache size is not part of the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from train_speed import build

SIZES = ("LENGTH_MULTIPLE", "GROUP_ROWS", "CHUNK_ROWS")


def set_sizes(values: tuple[int, int, int]) -> None:
    """Set the three size multiples of the library (batch length, expert group, chunk)."""
    from hymoerec.models import moe
    from hymoerec.training import batches, loss

    batches.LENGTH_MULTIPLE, moe.GROUP_ROWS, loss.CHUNK_ROWS = values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="hymoerec")
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batches", type=int, default=120, help="timed batches per side")
    parser.add_argument("--set", action="append", default=[], help="TrainConfig KEY=VALUE")
    args = parser.parse_args()
    import torch

    from hymoerec.models import moe
    from hymoerec.training import batches, loss

    shipped = (batches.LENGTH_MULTIPLE, moe.GROUP_ROWS, loss.CHUNK_ROWS)
    sides = {"every shape as it comes": (1, 1, 1), "sizes rounded up (shipped)": shipped}
    overrides = list(args.set)  # bf16 unless --set bf16=false
    runs = {}
    for name, sizes in sides.items():
        set_sizes(sizes)
        trainer = build(args.model, args.dataset, args.data_dir, overrides, True)[0]
        stream = trainer.sampler.epoch(trainer.rng)
        trainer.train_batch(next(stream))  # untimed
        runs[name] = (trainer, stream)
    steps = len(next(iter(runs.values()))[0].sampler)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model} on")
    print(f"{args.dataset}, overrides {overrides}, {args.batches} batches per side")
    times: dict[str, list[tuple[int, float]]] = {name: [] for name in sides}
    for index in range(args.batches):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in order:
            set_sizes(sides[name])
            trainer, stream = runs[name]
            batch = next(stream)
            begin = time.perf_counter()
            trainer.train_batch(batch)
            times[name].append((batch.items.numel(), time.perf_counter() - begin))
    for name, sizes in sides.items():
        table = np.array(times[name])
        design = np.c_[np.ones(len(table)), table[:, 0]]
        fixed, per_token = np.linalg.lstsq(design, table[:, 1], rcond=None)[0]
        print(
            f"{name:28s} {dict(zip(SIZES, sizes, strict=True))}: {table[:, 1].sum():.2f} s, "
            f"step = {1e3 * fixed:.1f} ms + {1e6 * per_token:.2f} us x tokens, "
            f"~{steps * table[:, 1].mean():.1f} s per {steps}-step epoch"
        )
    first, second = (sum(t for _, t in times[name]) for name in sides)
    print(f"ratio {first / second:.3f}x")


if __name__ == "__main__":
    main()
