"""Options and checks shared by the commands: the data options, the compute options, the
partial run config they make, and the optional extras a command needs."""

from __future__ import annotations

import argparse
import importlib.util
from typing import TypeAlias

from hymoerec.config import DataConfig, prepare_dataset
from hymoerec.data.errors import DataError
from hymoerec.data.protocol import TIE_ORDERS, SequenceData
from hymoerec.data.registry import READERS, Source
from hymoerec.schema import from_dict

# what `add_subparsers` returns: each command module adds its commands to it
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# The data specification (hymoerec.config.DataConfig) as command-line options, the same for
# every command that reads a dataset. Defaults are None so that an option given can be told
# from one left out: a command that cannot honour an option given rejects it.
DATA_OPTIONS = (
    "data_dir",
    "cache_dir",
    "user_core",
    "item_core",
    "ties",
    "format",
    "user_col",
    "item_col",
    "time_col",
    "rating_col",
    "min_rating",
    "sep",
    "encoding",
)


def add_dataset_options(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    group = parser.add_argument_group("data (run configs: the data section)")
    group.add_argument(
        "--data-dir",
        help="directory holding the named datasets (default: $HYMOEREC_DATA, else ./data)",
    )
    group.add_argument(
        "--cache-dir",
        help="where prepared datasets are cached "
        "(default: $HYMOEREC_CACHE, else ~/.cache/hymoerec)",
    )
    group.add_argument("--user-core", type=int, help="k-core threshold for users (default 5)")
    group.add_argument("--item-core", type=int, help="k-core threshold for items (default 5)")
    group.add_argument(
        "--ties",
        choices=TIE_ORDERS,
        help="order of one user's interactions with equal timestamps (default: the file's)",
    )
    group.add_argument(
        "--format",
        choices=sorted(READERS),
        help="format of a file dataset (default: recognised from its content)",
    )
    group.add_argument("--user-col", help="user column of a table file (default: user_id, ...)")
    group.add_argument("--item-col", help="item column of a table file (default: item_id, ...)")
    group.add_argument(
        "--time-col",
        help="time column of a table file (default: timestamp, ...; '' = the file's order)",
    )
    group.add_argument("--rating-col", help="rating column of a table file (default: rating)")
    group.add_argument("--min-rating", type=float, help="drop interactions rated below this")
    group.add_argument("--sep", help="field separator of a table file (default: from the file)")
    group.add_argument("--encoding", help="text encoding (default: the format's)")


def add_compute_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """--threads (and --device) for a command that computes."""
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: physical cores not kept busy by other processes)",
    )
    if device:
        parser.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    parser.set_defaults(computes=True)


def given_data_options(args: argparse.Namespace) -> dict[str, object]:
    """The data options given on the command line, by their config names."""
    options = {}
    for name in DATA_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = "\t" if name == "sep" and value == "\\t" else value
    return options


def data_config(args: argparse.Namespace) -> DataConfig:
    return from_dict(DataConfig, given_data_options(args), "data.")


def load(args: argparse.Namespace, dataset: str) -> tuple[Source, SequenceData]:
    return prepare_dataset(dataset, data_config(args))


def run_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Command-line options as a partial run config: --dataset, the data options,
    --threads and --device."""
    base: dict[str, object] = {}
    for key in ("model", "dataset"):
        if getattr(args, key, None):
            base[key] = getattr(args, key)
    data = given_data_options(args)
    if data:
        base["data"] = data
    train = {k: getattr(args, k) for k in ("threads", "device") if getattr(args, k) is not None}
    if train:
        base["train"] = train
    return base


def require(module: str, extra: str) -> None:
    """Fail with the install command when ``module`` of the optional ``extra`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise DataError(f"this command needs {module}: pip install 'hymoerec[{extra}]'")
