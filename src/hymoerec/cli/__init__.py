"""The ``hymoerec`` command line: a thin router to plain functions."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hymoerec.cli import data, demo, reproduce, runs, train
from hymoerec.data.errors import DataError

# Each module adds its commands, in the order `hymoerec --help` lists them. torch-backed
# modules are imported inside the commands that need them, so data commands start fast
# and stay small.
COMMAND_GROUPS = (data, train, runs, demo, reproduce)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hymoerec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if getattr(args, "computes", False):  # one thread rule for every computing command
            from hymoerec.runtime import configure_threads

            configure_threads(args.threads)
        args.handler(args)
    except KeyboardInterrupt as interrupt:
        print(f"hymoerec: interrupted; {_kept(interrupt, args.command)}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except (DataError, ValueError, OSError) as error:
        print(f"hymoerec: error: {error}", file=sys.stderr)
        return 2
    return 0


def _kept(interrupt: KeyboardInterrupt, command: str) -> str:
    """What an interrupted command left on disk, and how to continue it."""
    kept = getattr(interrupt, "kept", None)  # set by training (TrainingInterrupted)
    if kept is None:
        return "nothing unfinished was kept (a run or cache entry in progress is removed)"
    how = "with --resume" if command == "train" else "again"  # reproduce resumes by itself
    return (
        f"kept {kept}/ (its last end-of-epoch checkpoint); to continue, run the same command {how}"
    )


__all__ = ["build_parser", "main"]
