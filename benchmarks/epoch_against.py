"""One training epoch of a past revision against today's, float32 and bf16, each in a
fresh `hymoerec train` process, the three taking turns round after round so that the
machine's load falls on all of them alike.

    python benchmarks/epoch_against.py --baseline 2481683 --rounds 3

The baseline's ``src`` and ``configs`` come out of git (``git archive``) into a temporary
folder and run from there under this interpreter; every side trains its own revision's
``configs/DATASET-MODEL.yaml`` for one epoch (``train.epochs=1``) with ``--threads``
threads, and the epoch's seconds are what its run's metrics.jsonl records (training only:
not the data loading, the validation or the test ranking). One untimed warm-up epoch
per side, its config on MovieLens-100K, builds whatever it compiles first. Each round
gives its ratios, and the medians over rounds are printed last; ratios of sides within
one round are what to quote, as a shared machine moves the absolute seconds from round
to round.
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

ROOT = Path(__file__).resolve().parents[1]


def extract(revision: str, into: Path) -> Path:
    """The revision's src and configs under ``into``; returns that root."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src", "configs"],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def train(root: Path, cache: Path, args: list[str], out: Path) -> dict:
    """`hymoerec train` of the code under ``root``; the first epoch's record."""
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "HYMOEREC_CACHE": str(cache)}
    command = [sys.executable, "-m", "hymoerec", "train", *args, "--out", str(out), "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the past revision (a git commit)")
    parser.add_argument("--model", default="hymoerec")
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="epoch-against-") as folder:
        tmp = Path(folder)
        base = extract(args.baseline, tmp / "baseline")
        sides = {  # name: (code root, its own cache, bf16)
            f"{args.baseline[:7]} float32": (base, tmp / "cache-baseline", False),
            "now float32": (ROOT, tmp / "cache-now", False),
            "now bf16": (ROOT, tmp / "cache-now", True),
        }
        common = ["--data-dir", args.data_dir, "--set", "train.epochs=1"]
        common += ["--set", f"train.threads={args.threads}"]

        def run_args(root: Path, bf16: bool) -> list[str]:
            config = root / "configs" / f"{args.dataset}-{args.model}.yaml"
            return [*common, "--config", str(config), "--set", f"train.bf16={str(bf16).lower()}"]

        for index, (root, cache, bf16) in enumerate(sides.values()):  # warm-up, untimed
            warm = [*run_args(root, bf16), "--set", "dataset=ml-100k"]
            train(root, cache, warm, tmp / f"warm{index}")
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        print(f"{args.model} on {args.dataset}, one epoch per side, {args.threads} threads")
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                root, cache, bf16 = sides[name]
                out = tmp / f"round{round_}-{names.index(name)}"
                seconds[name].append(train(root, cache, run_args(root, bf16), out)["seconds"])
            line = "  ".join(f"{name} {seconds[name][-1]:.1f} s" for name in names)
            print(f"round {round_ + 1}: {line}  {ratios_line(seconds, names, round_)}", flush=True)
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        print("median: " + "  ".join(f"{name} {medians[name]:.1f} s" for name in names))
        print("ratios, median over rounds: " + ratios_line(seconds, names, None))


def ratios_line(seconds: dict[str, list[float]], names: list[str], round_: int | None) -> str:
    """baseline / now float32, baseline / now bf16 and now float32 / now bf16, of one round
    or (``round_`` None) the median of the rounds' ratios."""
    pairs = [(names[0], names[1]), (names[0], names[2]), (names[1], names[2])]
    parts = []
    for top, bottom in pairs:
        each = [a / b for a, b in zip(seconds[top], seconds[bottom], strict=True)]
        value = each[round_] if round_ is not None else statistics.median(each)
        parts.append(f"{top} / {bottom} {value:.2f}x")
    return ", ".join(parts)


if __name__ == "__main__":
    main()
