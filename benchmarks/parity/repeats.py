"""How often is a user's validation or test target an item already in their history?

    python benchmarks/parity/repeats.py --data-dir ../shared/data

Where the answer is never, a penalty on seen items loses nothing, and its likelihood fit
(train.seen_penalty) is infinite: the ranking that keeps the history then equals the one
that leaves it out.
"""

from __future__ import annotations

import argparse

import numpy as np

from hymoerec.data.cache import load_dataset
from hymoerec.data.protocol import ProtocolConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m,amazon-beauty")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    print("| dataset | users | valid targets in history | test targets in history |")
    print("|---|---|---|---|")
    for name in args.datasets.split(","):
        _, data = load_dataset(name, args.data_dir, None, ProtocolConfig())
        counts = []
        for split in ("valid", "test"):
            part = data.split(split)
            assert part.targets is not None
            seen = [
                int(part.targets[u]) in set(part.items[part.starts[u] : part.ends[u]].tolist())
                for u in range(data.num_users)
            ]
            counts.append(int(np.sum(seen)))
        print(f"| {name} | {data.num_users:,} | {counts[0]:,} | {counts[1]:,} |")


if __name__ == "__main__":
    main()
