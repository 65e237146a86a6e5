"""The protocol on the real shared datasets reproduces the published statistics."""

from pathlib import Path

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
