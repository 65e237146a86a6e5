"""Cold prepare vs cached load of the named datasets, and peak memory of `data prepare`.

    python benchmarks/prepare.py --data-dir ../shared/data [--datasets ml-1m amazon-beauty]

Cold = read + protocol + atomic cache write into an empty cache directory; cached = the
same call once the entry exists (median of 5). Peak memory is the maximum resident set
size of a separate `hymoerec data prepare` process run cold.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from hymoerec.data.cache import load_dataset


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def prepare_peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory of `hymoerec ARGS` run in a fresh interpreter."""
    probe = (
        "import resource, sys; from hymoerec.cli import main; rc = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
        "sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True
    )
    return int(done.stderr.split()[-1]) / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "amazon-beauty", "ml-100k"])
    args = parser.parse_args()
    # Peaks first: a child's peak RSS starts from its parent's at fork time on Linux, so
    # they are measured while this process is still small.
    peaks = {}
    for name in args.datasets:
        with tempfile.TemporaryDirectory() as cache:
            peaks[name] = prepare_peak_rss_mb(
                ["data", "prepare", name, "--data-dir", args.data_dir, "--cache-dir", cache]
            )
    print(f"{'dataset':<14} {'cold s':>8} {'cached s':>9} {'speed-up':>9} {'peak RSS MB':>12}")
    for name in args.datasets:
        with tempfile.TemporaryDirectory() as cache:
            cold = timed(lambda: load_dataset(name, args.data_dir, cache))  # noqa: B023
            cached = statistics.median(
                timed(lambda: load_dataset(name, args.data_dir, cache))  # noqa: B023
                for _ in range(5)
            )
        print(f"{name:<14} {cold:>8.3f} {cached:>9.4f} {cold / cached:>8.0f}x {peaks[name]:>12.0f}")


if __name__ == "__main__":
    main()
