"""The raw interaction log every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = 0  # internal item id reserved for padding; real items are 1..N


@dataclass(frozen=True)
class Interactions:
    """One row per interaction, in file order, with the original (external) ids.

    ``user`` and ``item`` hold the ids as strings exactly as they appear in the source
    file. ``timestamp`` orders a user's interactions; formats without timestamps use the
    row's position in the file, so a stable sort keeps the file's order.
    """

    user: np.ndarray  # (n,) str
    item: np.ndarray  # (n,) str
    timestamp: np.ndarray  # (n,) int64 or float64
    rating: np.ndarray | None = None  # (n,) float64 where the format has ratings

    def __post_init__(self) -> None:
        n = len(self.user)
        lengths = {len(self.item), len(self.timestamp)}
        if self.rating is not None:
            lengths.add(len(self.rating))
        if lengths != {n}:
            raise ValueError("user, item, timestamp and rating must have the same length")

    def __len__(self) -> int:
        return len(self.user)
