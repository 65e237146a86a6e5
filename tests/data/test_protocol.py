import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hymoerec.data.batches import right_padded
from hymoerec.data.errors import DataError
from hymoerec.data.interactions import Interactions
from hymoerec.data.protocol import (
    IdMap,
    ProtocolConfig,
    apply_protocol,
    k_core,
    statistics,
    tie_order,
)


def log(rows: list[tuple[str, str, int]]) -> Interactions:
    users, items, times = zip(*rows, strict=True)
    return Interactions(np.array(users), np.array(items), np.array(times, dtype=np.int64))


def test_k_core_needs_more_than_one_pass() -> None:
    # 2-core. Pass 1 removes item z (1 interaction) -> user c drops to 1 interaction;
    # pass 2 removes user c -> item y drops to 1 interaction; pass 3 removes item y ->
    # user b drops to 1; pass 4 removes user b. Users a, d with items x, w survive.
    rows = [
        ("a", "x"),
        ("a", "w"),
        ("d", "x"),
        ("d", "w"),
        ("c", "y"),
        ("c", "z"),
        ("b", "y"),
        ("b", "v"),
        ("e", "v"),
        ("e", "x"),
    ]
    users = np.array([ord(u) for u, _ in rows])
    items = np.array([ord(i) for _, i in rows])
    one_pass = (np.bincount(users)[users] >= 2) & (np.bincount(items)[items] >= 2)
    keep = k_core(users, items, 2, 2)
    assert one_pass.sum() > keep.sum()  # a single pass is not the fixpoint
    kept = {rows[i] for i in np.flatnonzero(keep)}
    assert kept == {("a", "x"), ("a", "w"), ("d", "x"), ("d", "w")}
    # the result is a fixpoint: every kept user and item has at least k kept rows
    assert np.bincount(users[keep]).max(initial=0) >= 2
    assert set(np.bincount(users[keep])[np.unique(users[keep])]) == {2}
    assert set(np.bincount(items[keep])[np.unique(items[keep])]) == {2}


def test_sorting_is_stable_and_items_reindexed_from_one() -> None:
    rows = [
        ("u1", "b", 5),
        ("u2", "a", 1),
        ("u1", "a", 3),
        ("u1", "c", 5),
        ("u2", "c", 1),
        ("u2", "b", 0),
        ("u1", "d", 9),
    ]
    data = apply_protocol(log(rows), ProtocolConfig(user_core=3, item_core=1))
    assert data.num_items == 4
    assert list(data.item_ids.external) == ["a", "b", "c", "d"]
    u1 = data.item_ids.to_external(data.sequence(0)).tolist()
    u2 = data.item_ids.to_external(data.sequence(1)).tolist()
    assert u1 == ["a", "b", "c", "d"]  # b and c tie at t=5: file order kept
    assert u2 == ["b", "a", "c"]  # a and c tie at t=1: file order kept
    assert data.items.min() == 1  # 0 is padding
    assert data.item_ids.to_internal(["c", "zz"]).tolist() == [3, -1]


def test_tie_orders() -> None:
    # c, b and e tie at t=5; a comes before them, d after
    rows = [("u1", "c", 5), ("u1", "a", 1), ("u1", "b", 5), ("u1", "d", 9), ("u1", "e", 5)]

    def order(ties: str) -> list[str]:
        data = apply_protocol(log(rows), ProtocolConfig(user_core=3, item_core=1, ties=ties))
        return data.item_ids.to_external(data.sequence(0)).tolist()

    assert order("file") == ["a", "c", "b", "e", "d"]
    assert order("item") == ["a", "b", "c", "e", "d"]
    shuffled = order("shuffle")
    assert shuffled[0] == "a" and shuffled[-1] == "d"  # the shuffle never crosses time
    assert sorted(shuffled[1:4]) == ["b", "c", "e"]
    assert order("shuffle") == shuffled  # seeded: one dataset, one order


def test_unknown_tie_order_is_named() -> None:
    with pytest.raises(DataError, match="ties='time'"):
        ProtocolConfig(ties="time")


def test_numeric_ids_sort_numerically() -> None:
    rows = [
        ("10", "100", 0),
        ("10", "9", 1),
        ("10", "20", 2),
        ("2", "9", 0),
        ("2", "100", 1),
        ("2", "20", 2),
    ]
    data = apply_protocol(log(rows), ProtocolConfig(user_core=3, item_core=1))
    assert list(data.users.external) == ["2", "10"]
    assert list(data.item_ids.external) == ["9", "20", "100"]


def test_leave_one_out_boundaries() -> None:
    rows = [("u", str(i), t) for t, i in enumerate([11, 12, 13, 14, 15])]
    rows += [("v", str(i), t) for t, i in enumerate([13, 11, 12])]
    data = apply_protocol(log(rows), ProtocolConfig(user_core=3, item_core=1))
    ext = data.item_ids.to_external

    train = data.split("train")
    valid = data.split("valid")
    test = data.split("test")
    history = lambda part, u: ext(part.items[part.starts[u] : part.ends[u]]).tolist()  # noqa: E731
    assert history(train, 0) == ["11", "12", "13"]
    assert history(valid, 0) == ["11", "12", "13"] and ext(valid.targets[0]) == "14"
    assert history(test, 0) == ["11", "12", "13", "14"] and ext(test.targets[0]) == "15"
    assert history(train, 1) == ["13"]
    assert ext(valid.targets[1]) == "11" and ext(test.targets[1]) == "12"
    assert history(test, 1) == ["13", "11"]


def test_right_padded_keeps_most_recent_items() -> None:
    items = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int32)
    starts, ends = np.array([0, 5]), np.array([5, 7])
    windows, lengths = right_padded(items, starts, ends, 3)
    assert windows.tolist() == [[3, 4, 5], [6, 7, 0]]
    assert lengths.tolist() == [3, 2]


def test_protocol_options_are_validated() -> None:
    with pytest.raises(DataError, match="user_core=2"):
        ProtocolConfig(user_core=2)
    with pytest.raises(DataError, match="no interactions survive"):
        apply_protocol(log([("u", "a", 0), ("u", "b", 1), ("u", "c", 2)]), ProtocolConfig())


def test_statistics_count_targets_in_the_training_part() -> None:
    rows = [("u1", i, t) for t, i in enumerate("aabcd")] + [
        ("u2", i, t) for t, i in enumerate("abadb")
    ]
    data = apply_protocol(log(rows), ProtocolConfig(user_core=3, item_core=1))
    stats = statistics(data)
    # training parts: u1 a a b, u2 a b a -> a: 4, b: 2; valid targets c, d; test d, b
    assert stats["valid_target_train_count_median"] == 0.0  # c and d: 0 and 0
    assert stats["test_target_train_count_median"] == 1.0  # d: 0, b: 2
    assert stats["valid_targets_under_10_in_train"] == 1.0
    assert stats["train_targets"] == 4  # (5 - 3) per user


def test_id_lookup_never_aliases_control_characters() -> None:
    """NumPy's string arrays drop trailing NULs: "1\\x00" must stay unknown, not become "1"."""
    ids = IdMap(np.array(["1", "2", "10"]), offset=1)
    assert ids.to_internal(["1", "1\x00", "2\x00\x00", " 1", "10"]).tolist() == [1, -1, -1, -1, 3]
    assert ids.to_internal("1\x00").tolist() == [-1]
    assert ids.to_internal(np.array(["2", "10"])).tolist() == [2, 3]


# ------------------------------------------- against the string-sorting reference


def reference_protocol(log: Interactions, config: ProtocolConfig) -> tuple[np.ndarray, ...]:
    """The protocol as first written: every row's string id sorted with np.unique, before
    and after k-core (the codes are now ordered once per distinct id)."""

    def encode(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            as_int = ids.astype(np.int64)
            numeric = bool(np.array_equal(as_int.astype(str), ids))
        except (ValueError, OverflowError):
            numeric = False
        if numeric:
            unique, codes = np.unique(as_int, return_inverse=True)
            return unique.astype(str), codes
        return np.unique(ids, return_inverse=True)

    _, user_codes = encode(log.user)
    _, item_codes = encode(log.item)
    keep = np.ones(len(log), dtype=bool)
    while True:
        user_counts = np.bincount(user_codes[keep], minlength=user_codes.max() + 1)
        item_counts = np.bincount(item_codes[keep], minlength=item_codes.max() + 1)
        new_keep = (
            keep
            & (user_counts[user_codes] >= config.user_core)
            & (item_counts[item_codes] >= config.item_core)
        )
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    user_external, user_code = encode(log.user[keep])
    item_external, item_code = encode(log.item[keep])
    timestamp = log.timestamp[keep]
    order = tie_order(item_code, config.ties)
    order = order[np.argsort(timestamp[order], kind="stable")]
    order = order[np.argsort(user_code[order], kind="stable")]
    offsets = np.zeros(len(user_external) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_code, minlength=len(user_external)), out=offsets[1:])
    items = (item_code[order] + 1).astype(np.int32)
    return offsets, items, user_external, item_external


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["1", "2", "10", "07", "u", "v", "-3", "é", "99999999999999999999"]),
            st.sampled_from(["5", "40", "100", "a", "B", "b", "0", "+1"]),
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from(["file", "item", "shuffle"]),
    st.integers(3, 4),
    st.integers(1, 3),
)
def test_protocol_matches_the_reference(
    rows: list[tuple[str, str, int]], ties: str, user_core: int, item_core: int
) -> None:
    """Orders, codes, external ids and their dtypes; numeric ids among them, and ids that
    become all numeric only once k-core has removed the others."""
    config = ProtocolConfig(user_core=user_core, item_core=item_core, ties=ties)
    try:
        want = reference_protocol(log(rows), config)
    except ValueError:  # bincount of nothing: no row survives
        with pytest.raises(DataError, match="no interactions survive"):
            apply_protocol(log(rows), config)
        return
    if len(want[1]) == 0:
        with pytest.raises(DataError, match="no interactions survive"):
            apply_protocol(log(rows), config)
        return
    got = apply_protocol(log(rows), config)
    for mine, theirs in zip(
        (got.offsets, got.items, got.users.external, got.item_ids.external), want, strict=True
    ):
        assert mine.dtype == theirs.dtype
        assert mine.tolist() == theirs.tolist()
