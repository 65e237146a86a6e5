"""``hymoerec data stats`` and ``hymoerec data prepare``."""

from __future__ import annotations

import argparse
import json
import time

from hymoerec.cli.options import Commands, add_dataset_options, data_config
from hymoerec.cli.tables import plural, table
from hymoerec.config import data_source, prepare_dataset
from hymoerec.data.cache import is_cached, prepare
from hymoerec.data.protocol import statistics
from hymoerec.data.registry import Source


def _reading(source: Source) -> str:
    """How a source is read, in words: its format and, for a table, its columns."""
    options = ", ".join(
        f"{key} {value!r}" for key, value in source.options.items() if key.endswith("_col")
    )
    return f"format {source.format}" + (f"; {options}" if options else "")


def cmd_data_stats(args: argparse.Namespace) -> None:
    spec = data_config(args)
    source, data = prepare_dataset(args.dataset, spec)
    stats = statistics(data)
    stats["max_len"] = source.max_len
    if args.json:
        print(json.dumps(stats, indent=2))
        return
    print(
        f"{source.name} ({source.path}, {_reading(source)}, "
        f"{spec.user_core}-core users / {spec.item_core}-core items, leave-one-out)"
    )
    print(table(["statistic", "value"], [[k, v] for k, v in stats.items()]))


def cmd_data_prepare(args: argparse.Namespace) -> None:
    spec = data_config(args)
    source = data_source(args.dataset, spec)
    cached = is_cached(source, spec.protocol(), spec.cache_dir)
    begin = time.perf_counter()
    data = prepare(source, spec.protocol(), spec.cache_dir)
    seconds = time.perf_counter() - begin
    state = "loaded from cache" if cached else "prepared and cached"
    print(
        f"{source.name} ({_reading(source)}): {plural(data.num_users, 'user')}, "
        f"{plural(data.num_items, 'item')}, {plural(data.num_interactions, 'interaction')}; "
        f"{state} in {seconds:.3f} s"
    )


def add_parsers(commands: Commands) -> None:
    data = commands.add_parser("data", help="prepare datasets and show their statistics")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="print the protocol's statistics table")
    add_dataset_options(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_data_stats)
    prep = data_commands.add_parser("prepare", help="build the prepared-dataset cache")
    add_dataset_options(prep)
    prep.set_defaults(handler=cmd_data_prepare)
