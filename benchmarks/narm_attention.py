"""Time one NARM training step (forward + backward) by the size of its attention chunks.

Run: ``.venv/bin/python benchmarks/narm_attention.py [--batch 32] [--length 200]``.
Shapes default to MovieLens-1M training (batch 32, history 200, 3,416 items, RecBole's
NARM sizes). A chunk as long as the history materialises all L x L prefix-key pairs at
once, the plain way; smaller chunks each attend to only the keys their prefixes can see.
Every chunk size gives the same output (tests/models/test_models.py checks it against the
equations); this prints the time and the peak memory of the step for each.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

import hymoerec.models.narm as narm
from hymoerec.models import build_model


def measure(chunk: int, batch: int, length: int, items: int, repeats: int) -> tuple[float, float]:
    """Median seconds per step and the process's peak resident memory in MiB."""
    torch.manual_seed(0)
    narm.QUERY_CHUNK = chunk
    model = build_model("narm", {}, items)
    lengths = torch.randint(length // 2, length + 1, (batch,))
    lengths[0] = length  # a full-length history in every batch, as on ML-1M
    position = torch.arange(length)
    seqs = torch.randint(1, items + 1, (batch, length))
    seqs = torch.where(position < lengths[:, None], seqs, 0)
    times = []
    for _ in range(repeats + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        model(seqs).hidden.sum().backward()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return sorted(times[1:])[repeats // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--items", type=int, default=3416)
    parser.add_argument("--chunks", default="200,32,16,8,4", help="chunk sizes to time")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:  # one chunk size per interpreter: peak memory is its own
        seconds, peak = measure(args.child, args.batch, args.length, args.items, args.repeats)
        print(f"{seconds} {peak}")
        return
    print(f"NARM step, batch {args.batch}, history {args.length}, {args.threads} thread(s)")
    print(f"{'chunk':>6} {'s/step':>8} {'peak MiB':>9}")
    for chunk in (int(c) for c in args.chunks.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", str(chunk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        print(f"{chunk:>6} {float(out[0]):>8.3f} {float(out[1]):>9.0f}")


if __name__ == "__main__":
    main()
