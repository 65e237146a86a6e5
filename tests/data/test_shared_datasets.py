"""The protocol on the real shared datasets reproduces the published statistics, and the
columnar readers give the line-by-line readers' arrays on them."""

from pathlib import Path

import numpy as np
import pytest

from hymoerec.data.cache import load_dataset
from hymoerec.data.protocol import statistics

EXPECTED = {
    "ml-1m": (6040, 3416, 999_611),
    "amazon-beauty": (22_363, 12_101, 198_502),
    "ml-100k": (943, 1349, 99_287),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_statistics_match_the_reference(name: str, shared_data: Path, cache_root: Path) -> None:
    _, data = load_dataset(name, shared_data, cache_root)
    stats = statistics(data)
    assert (stats["users"], stats["items"], stats["interactions"]) == EXPECTED[name]
    assert data.items.min() == 1 and data.items.max() == data.num_items
    assert data.lengths.min() >= 5


def test_ml1m_training_targets(shared_data: Path, cache_root: Path) -> None:
    _, data = load_dataset("ml-1m", shared_data, cache_root)
    assert statistics(data)["train_targets"] == 981_491


SHARED_FILES = {
    "ml-1m/sequences.txt": ("sequences", ("utf-8",)),
    "ml-100k/u.data": ("movielens_100k", ("utf-8",)),
    "amazon-beauty/interactions.tsv": (
        "delimited",
        ("user_id", "item_id", "timestamp", None, "\t", "utf-8"),
    ),
}


@pytest.mark.parametrize("name", sorted(SHARED_FILES))
def test_columnar_reader_gives_the_line_by_line_result(name: str, shared_data: Path) -> None:
    """Every shared file takes the columnar path (it does not decline) and gives exactly
    the arrays of the line-by-line reader."""
    from hymoerec.data.readers import checked, columnar

    reader, arguments = SHARED_FILES[name]
    path = shared_data / name
    fast = getattr(columnar, reader)(path, *arguments, False)
    slow = getattr(checked, reader)(path, *arguments, False)
    for got, want in ((fast.user, slow.user), (fast.item, slow.item)):
        assert got.values.dtype == want.values.dtype
        assert np.array_equal(got.values, want.values)
        assert np.array_equal(got.codes, want.codes)
    assert fast.timestamp.dtype == slow.timestamp.dtype
    assert np.array_equal(fast.timestamp, slow.timestamp)
    assert (fast.rating is None) == (slow.rating is None)
    if fast.rating is not None:
        assert np.array_equal(fast.rating, slow.rating)
