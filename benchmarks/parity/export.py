"""A prepared dataset -> RecBole atomic files that RecBole reads back in exactly our order.

``DIR/NAME/NAME.inter`` holds one row per interaction, tab-separated, with the header
``user_id:token  item_id:token  timestamp:float``. Users and items are written as our
internal ids (users 0..U-1, items 1..N), and the timestamp of an interaction is its
position in the user's sequence (0, 1, 2, ...). So:

- RecBole's sort by (user, timestamp) reproduces each sequence exactly, ties included,
  since no two interactions of a user share a timestamp;
- the data is already 5-core, so RecBole's 5-core filter removes nothing;
- RecBole's leave-one-out split takes the same last and second-to-last items as ours.

``read_atomic`` reads the file back into per-user sequences; the tests use it to check the
round trip without RecBole installed.

    python benchmarks/parity/export.py ml-100k --data-dir ../shared/data --out /tmp/atomic
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from hymoerec.data.cache import load_dataset
from hymoerec.data.protocol import ProtocolConfig, SequenceData

HEADER = ("user_id:token", "item_id:token", "timestamp:float")


def export_atomic(data: SequenceData, out_dir: Path, name: str) -> Path:
    """Write ``data`` as RecBole's ``out_dir/name/name.inter``; returns the file's path.

    The file is written beside its final name and renamed into place, so an interrupted
    export never leaves a file that RecBole would read as a complete dataset.
    """
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.inter"
    lengths = data.lengths
    users = np.repeat(np.arange(data.num_users), lengths)
    positions = np.arange(data.num_interactions) - np.repeat(data.offsets[:-1], lengths)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            f.write("\t".join(HEADER) + "\n")
            rows = np.stack([users, data.items.astype(np.int64), positions], axis=1)
            np.savetxt(f, rows, fmt="%d", delimiter="\t")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_atomic(path: Path) -> dict[int, list[int]]:
    """Per user, the items of an atomic ``.inter`` file in timestamp order."""
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = tuple(next(reader))
        if header != HEADER:
            raise ValueError(f"{path}: header {header}, expected {HEADER}")
        rows = [(int(u), int(i), float(t)) for u, i, t in reader]
    sequences: dict[int, list[tuple[float, int]]] = {}
    for user, item, time in rows:
        sequences.setdefault(user, []).append((time, item))
    # a stable sort by time, as RecBole's (user, timestamp) sort is
    return {u: [i for _, i in sorted(pairs, key=lambda p: p[0])] for u, pairs in sequences.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a named dataset (ml-100k, amazon-beauty, ...) or a file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", type=Path, required=True, help="folder of the atomic datasets")
    parser.add_argument("--name", default=None, help="RecBole dataset name (default: dataset)")
    args = parser.parse_args()
    source, data = load_dataset(args.dataset, args.data_dir, args.cache_dir, ProtocolConfig())
    path = export_atomic(data, args.out, args.name or source.name)
    print(f"{path}: {data.num_users} users, {data.num_items} items, {data.num_interactions} rows")


if __name__ == "__main__":
    main()
