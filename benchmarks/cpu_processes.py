"""One training epoch on a CPU as one process, against data-parallel processes
(``torchrun``) that share the same cores.

    python benchmarks/cpu_processes.py --config configs/ml-1m-hymoerec.yaml --procs 2

Runs ``hymoerec train --config CONFIG --set train.epochs=1`` (plus ``--set`` overrides)
as one process of ``--threads`` threads and as ``--procs`` torchrun processes of
``threads / procs`` threads each, alternating the two ``--repeats`` times. Both train on
the same global batch (``train.batch_size``, split among the processes), so they take the
same optimizer steps. Each run writes its own run directory in a temporary folder; the
figures are read from its metrics.jsonl: the epoch's training seconds (``seconds``) and
the wall time with validation (``elapsed``). Prints every run, the medians and the
ratio of the medians (one process / several).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def command(args: argparse.Namespace, procs: int, out: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one run with ``procs`` processes."""
    threads = max(1, args.threads // procs)
    train = ["-m", "hymoerec.cli", "train", "--config", args.config, "--data-dir", args.data_dir]
    train += ["--set", "train.epochs=1", "--set", f"train.threads={threads}", "--out", str(out)]
    for item in args.set:
        train += ["--set", item]
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    return launcher + train, {**os.environ, "OMP_NUM_THREADS": str(threads)}


def run(args: argparse.Namespace, procs: int, folder: Path, index: int) -> dict[str, float]:
    out = folder / f"procs{procs}-run{index}"
    argv, env = command(args, procs, out)
    subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {"seconds": first["seconds"], "elapsed": first["elapsed"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/ml-1m-hymoerec.yaml")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--procs", type=int, default=2, help="processes of the second variant")
    parser.add_argument("--threads", type=int, default=2, help="threads in all, either way")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="run option KEY=VALUE")
    args = parser.parse_args()
    if args.procs < 2 or args.threads < args.procs:
        parser.error("--procs must be at least 2 and at most --threads")
    variants = (1, args.procs)
    results: dict[int, list[dict[str, float]]] = {procs: [] for procs in variants}
    print(f"{args.config}, one epoch, {args.threads} threads in all, overrides: {args.set}")
    with tempfile.TemporaryDirectory(prefix="hymoerec-procs-") as folder:
        for index in range(args.repeats):
            order = variants if index % 2 == 0 else variants[::-1]
            for procs in order:
                figures = run(args, procs, Path(folder), index)
                results[procs].append(figures)
                print(
                    f"run {index + 1}: {procs} process(es) x {args.threads // procs} thread(s): "
                    f"epoch {figures['seconds']:.1f} s, with validation {figures['elapsed']:.1f} s"
                )
    medians = {
        procs: {key: statistics.median(r[key] for r in runs) for key in ("seconds", "elapsed")}
        for procs, runs in results.items()
    }
    one, many = medians[1], medians[args.procs]
    for procs, figures in medians.items():
        print(
            f"median, {procs} process(es): epoch {figures['seconds']:.1f} s, "
            f"with validation {figures['elapsed']:.1f} s"
        )
    print(
        f"one process / {args.procs}: epoch {one['seconds'] / many['seconds']:.2f}x, "
        f"with validation {one['elapsed'] / many['elapsed']:.2f}x"
    )


if __name__ == "__main__":
    main()
