"""The paper's protocol, as RecBole applies it for Mamba4Rec.

Per user, interactions in chronological order (ties keep the file's order unless
``ties`` says otherwise); iterative
k-core filtering of users and items to a fixpoint; items re-indexed 1..N with 0 kept for
padding; leave-one-out split (last item = test target, second-to-last = validation target,
the rest = training; the test history includes the validation item).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hymoerec.data.errors import DataError
from hymoerec.data.interactions import PAD, Ids, Interactions

MIN_SPLIT_LENGTH = 3  # a leave-one-out split needs one training, one validation, one test item
# Order of one user's interactions with equal timestamps: as in the file, by item id, or
# shuffled (seeded, so one dataset gives one order). docs/results.md shows why it matters.
TIE_ORDERS = ("file", "item", "shuffle")
TIE_SHUFFLE_SEED = 0


@dataclass(frozen=True)
class ProtocolConfig:
    user_core: int = 5  # minimum interactions per user after filtering (paper: 5)
    item_core: int = 5  # minimum interactions per item after filtering (paper: 5)
    ties: str = "file"  # order of equal timestamps, one of TIE_ORDERS

    def __post_init__(self) -> None:
        if self.ties not in TIE_ORDERS:
            raise DataError(f"ties={self.ties!r}: must be one of {', '.join(TIE_ORDERS)}")
        if self.user_core < MIN_SPLIT_LENGTH:
            raise DataError(
                f"user_core={self.user_core}: must be at least {MIN_SPLIT_LENGTH}, "
                "since leave-one-out needs a training, a validation and a test item per user"
            )
        if self.item_core < 1:
            raise DataError(f"item_core={self.item_core}: must be at least 1")


@dataclass(frozen=True)
class IdMap:
    """Maps external ids (strings, as in the source file) to internal integers and back.

    Internal id ``offset + i`` is ``external[i]``: items use offset 1 (0 is padding),
    users offset 0.
    """

    external: np.ndarray  # (n,) str, sorted (numerically when every id is an integer)
    offset: int = 0

    def __len__(self) -> int:
        return len(self.external)

    def to_external(self, internal: np.ndarray | int) -> np.ndarray:
        return self.external[np.asarray(internal) - self.offset]

    def to_internal(self, external: np.ndarray | list[str] | str) -> np.ndarray:
        """Internal ids of known external ids; -1 for unknown ones. Python strings are
        looked up as they are: a NumPy string array would drop trailing NUL characters and
        alias "1\\x00" to "1"."""
        if isinstance(external, str):
            ids = [external]
        elif isinstance(external, np.ndarray):
            ids = [str(e) for e in external.ravel().tolist()]
        else:
            ids = [str(e) for e in external]
        lookup = self._lookup()
        return np.array([lookup.get(e, -1) for e in ids], dtype=np.int64)

    def _lookup(self) -> dict[str, int]:
        cache = self.__dict__.get("_lookup_cache")
        if cache is None:
            cache = {e: i + self.offset for i, e in enumerate(self.external.tolist())}
            object.__setattr__(self, "_lookup_cache", cache)
        return cache


@dataclass(frozen=True)
class SequenceData:
    """Every user's filtered chronological sequence, stored as one CSR array.

    User u's sequence is ``items[offsets[u]:offsets[u + 1]]`` (internal ids 1..N).
    """

    offsets: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (total,) int32
    users: IdMap
    item_ids: IdMap

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def split(self, name: str) -> Split:
        """Histories and targets of the 'train', 'valid' or 'test' split.

        train: the sequence minus its last two items (each position predicts the next);
        valid: history = train part, target = second-to-last item;
        test: history = all but the last item (validation item included), target = last.
        """
        drop = {"train": 2, "valid": 2, "test": 1}.get(name)
        if drop is None:
            raise ValueError(f"unknown split {name!r}; expected train, valid or test")
        starts = self.offsets[:-1]
        ends = self.offsets[1:] - drop
        targets = None if name == "train" else self.items[ends].astype(np.int64)
        return Split(self.items, starts, ends, targets)


@dataclass(frozen=True)
class Split:
    """Per user: the history ``items[starts[u]:ends[u]]`` and, for evaluation, a target."""

    items: np.ndarray  # (total,) int32, shared with SequenceData
    starts: np.ndarray  # (U,) int64
    ends: np.ndarray  # (U,) int64
    targets: np.ndarray | None  # (U,) int64 or None for the training split

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts


def encode(ids: Ids) -> tuple[np.ndarray, np.ndarray]:
    """(sorted external ids as str, code of every row in that order). Integer ids sort
    numerically, others by code point. Works on the distinct values only: the rows are
    re-coded with one int32 lookup, never sorted as strings."""
    values = ids.values
    try:
        as_int = values.astype(np.int64)
        numeric = bool(np.array_equal(as_int.astype(str), values))
    except (ValueError, OverflowError):
        numeric = False
    if not numeric:
        return values, ids.codes  # Ids keeps its values sorted by code point
    order = np.argsort(as_int, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return as_int[order].astype(str), rank[ids.codes]


def k_core(users: np.ndarray, items: np.ndarray, user_core: int, item_core: int) -> np.ndarray:
    """Boolean mask of the rows kept by iterative k-core filtering, run to a fixpoint.

    ``users`` and ``items`` are integer codes. Removing a sparse item can push a user under
    the threshold and vice versa, so passes repeat until nothing changes.
    """
    keep = np.ones(len(users), dtype=bool)
    kept = len(users)
    while True:
        user_counts = np.bincount(users[keep], minlength=int(users.max(initial=-1)) + 1)
        item_counts = np.bincount(items[keep], minlength=int(items.max(initial=-1)) + 1)
        # per-row lookups of a boolean per user / item: one byte a row, not eight
        keep &= (user_counts >= user_core)[users]
        keep &= (item_counts >= item_core)[items]
        now = int(np.count_nonzero(keep))
        if now == kept:
            return keep
        kept = now


def apply_protocol(log: Interactions, config: ProtocolConfig) -> SequenceData:
    """Raw interaction log -> filtered, re-indexed chronological sequences.

    Works on the log's int32 id codes: the string ids are only looked at once per
    distinct value, to order them."""
    if len(log) == 0:
        raise DataError("no interactions to prepare")
    keep = k_core(log.user_ids.codes, log.item_ids.codes, config.user_core, config.item_core)
    if not keep.any():
        raise DataError(
            f"no interactions survive {config.user_core}-core users / "
            f"{config.item_core}-core items filtering"
        )
    user_external, user_code = encode(log.user_ids.select(keep))
    item_external, item_code = encode(log.item_ids.select(keep))
    timestamp = log.timestamp if keep.all() else log.timestamp[keep]
    del keep

    # Stable sorts: by time, then by user, so equal timestamps keep the order they have
    # before the sorts: the file's, or the tie order asked for.
    if config.ties == "file":
        order = np.argsort(timestamp, kind="stable")
    else:
        order = tie_order(item_code, config.ties)
        order = order[np.argsort(timestamp[order], kind="stable")]
    del timestamp
    order = order[np.argsort(user_code[order], kind="stable")]

    counts = np.bincount(user_code, minlength=len(user_external))
    offsets = np.zeros(len(user_external) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    items = item_code[order]  # (total,) int32
    items += PAD + 1  # internal ids start after PAD
    return SequenceData(
        offsets=offsets,
        items=items,
        users=IdMap(user_external, offset=0),
        item_ids=IdMap(item_external, offset=1),
    )


def tie_order(item_code: np.ndarray, ties: str) -> np.ndarray:
    """A permutation of the rows that decides the order of equal timestamps."""
    if ties == "item":
        return np.argsort(item_code, kind="stable")
    if ties == "shuffle":
        return np.random.default_rng(TIE_SHUFFLE_SEED).permutation(len(item_code))
    return np.arange(len(item_code))


RARE = 10  # a target seen fewer times than this in training counts as rare


def statistics(data: SequenceData) -> dict[str, float]:
    """The protocol's statistics table for one dataset, with how often the validation and
    test targets occur in the training part (a later target is often a newer, rarer item)."""
    lengths = data.lengths
    in_train = np.ones(len(data.items), dtype=bool)
    in_train[data.offsets[1:] - 1] = False  # test targets
    in_train[data.offsets[1:] - 2] = False  # validation targets
    counts = np.bincount(data.items[in_train], minlength=data.num_items + 1)
    valid_counts = counts[data.items[data.offsets[1:] - 2]]
    test_counts = counts[data.items[data.offsets[1:] - 1]]
    return {
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        "avg_length": float(lengths.mean()),
        "min_length": int(lengths.min()),
        "max_length": int(lengths.max()),
        "density": data.num_interactions / (data.num_users * data.num_items),
        "train_targets": int((lengths - 3).sum()),
        "valid_target_train_count_median": float(np.median(valid_counts)),
        "test_target_train_count_median": float(np.median(test_counts)),
        f"valid_targets_under_{RARE}_in_train": float((valid_counts < RARE).mean()),
        f"test_targets_under_{RARE}_in_train": float((test_counts < RARE).mean()),
    }
