"""The raw interaction log every reader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PAD = 0  # internal item id reserved for padding; real items are 1..N


@dataclass(frozen=True)
class Ids:
    """A column of external ids, dictionary-encoded: row ``i`` holds ``values[codes[i]]``.

    ``values`` are distinct and sorted (by code point, as NumPy sorts strings); every one
    is used by some row. A log of n rows with k distinct ids costs 4 n + k x width bytes,
    where a column of strings would cost n x width (4 bytes a character).
    """

    codes: np.ndarray  # (n,) int32
    values: np.ndarray  # (k,) str, distinct, sorted

    @classmethod
    def encode(cls, ids: Sequence[str] | np.ndarray) -> Ids:
        """Ids from one string per row."""
        values, codes = np.unique(np.asarray(ids, dtype=str).reshape(-1), return_inverse=True)
        return cls(codes.astype(np.int32).reshape(-1), values)

    @classmethod
    def from_dictionary(cls, codes: np.ndarray, dictionary: np.ndarray) -> Ids:
        """Ids from codes into a dictionary whose every entry some code uses, but which
        may repeat a value (e.g. " 4" and "4" once trimmed, or two ids that differ in a
        trailing NUL, which a NumPy string drops)."""
        values, remap = np.unique(np.asarray(dictionary, dtype=str), return_inverse=True)
        return cls(remap.astype(np.int32)[codes], values)

    def __len__(self) -> int:
        return len(self.codes)

    def decode(self) -> np.ndarray:
        """(n,) str: every row's id."""
        return self.values[self.codes]

    def select(self, keep: np.ndarray) -> Ids:
        """The rows where the boolean mask ``keep`` is true, without the values no kept
        row uses."""
        if keep.all():
            return self
        return Ids(self.codes[keep], self.values).compact()

    def compact(self) -> Ids:
        used = np.bincount(self.codes, minlength=len(self.values)) > 0
        if used.all():
            return self
        remap = (np.cumsum(used) - 1).astype(np.int32)
        return Ids(remap[self.codes], self.values[used])


@dataclass(frozen=True, init=False)
class Interactions:
    """One row per interaction, in file order, with the original (external) ids.

    ``user`` and ``item`` give the ids as strings exactly as they appear in the source
    file; they are kept dictionary-encoded (:class:`Ids`) and decoded on request. Either
    may be given as strings or as :class:`Ids`. ``timestamp`` orders a user's
    interactions; formats without timestamps use the row's position in the file, so a
    stable sort keeps the file's order.
    """

    user_ids: Ids
    item_ids: Ids
    timestamp: np.ndarray  # (n,) int64 or float64
    rating: np.ndarray | None  # (n,) float64 where the format has ratings

    def __init__(
        self,
        user: Ids | Sequence[str] | np.ndarray,
        item: Ids | Sequence[str] | np.ndarray,
        timestamp: np.ndarray,
        rating: np.ndarray | None = None,
    ) -> None:
        user_ids = user if isinstance(user, Ids) else Ids.encode(user)
        item_ids = item if isinstance(item, Ids) else Ids.encode(item)
        n = len(user_ids)
        lengths = {len(item_ids), len(timestamp)}
        if rating is not None:
            lengths.add(len(rating))
        if lengths != {n}:
            raise ValueError("user, item, timestamp and rating must have the same length")
        object.__setattr__(self, "user_ids", user_ids)
        object.__setattr__(self, "item_ids", item_ids)
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "rating", rating)

    @property
    def user(self) -> np.ndarray:
        """(n,) str: every row's user id."""
        return self.user_ids.decode()

    @property
    def item(self) -> np.ndarray:
        """(n,) str: every row's item id."""
        return self.item_ids.decode()

    def __len__(self) -> int:
        return len(self.user_ids)

    def select(self, keep: np.ndarray) -> Interactions:
        """The rows where the boolean mask ``keep`` is true."""
        rating = None if self.rating is None else self.rating[keep]
        return Interactions(
            self.user_ids.select(keep), self.item_ids.select(keep), self.timestamp[keep], rating
        )
