from pathlib import Path

import numpy as np
import pytest

from hymoerec.data import cache
from hymoerec.data.errors import DataError
from hymoerec.data.protocol import ProtocolConfig
from hymoerec.data.registry import resolve


def write_sequences(path: Path) -> None:
    path.write_text(
        "".join(f"u{u} " + " ".join(str(i) for i in range(u, u + 6)) + "\n" for u in range(8))
    )


def test_cached_load_equals_fresh_prepare(tmp_path: Path) -> None:
    file = tmp_path / "seq.txt"
    write_sequences(file)
    source = resolve(str(file))
    protocol = ProtocolConfig(user_core=3, item_core=1)
    fresh = cache.prepare(source, protocol, tmp_path / "cache")
    assert cache.is_cached(source, protocol, tmp_path / "cache")
    loaded = cache.prepare(source, protocol, tmp_path / "cache")
    np.testing.assert_array_equal(fresh.offsets, loaded.offsets)
    np.testing.assert_array_equal(fresh.items, loaded.items)
    np.testing.assert_array_equal(fresh.item_ids.external, loaded.item_ids.external)
    np.testing.assert_array_equal(fresh.users.external, loaded.users.external)
    assert [p.name.startswith(".") for p in (tmp_path / "cache").iterdir()] == [False]


def test_key_changes_with_content_and_options(tmp_path: Path) -> None:
    file = tmp_path / "seq.txt"
    write_sequences(file)
    source = resolve(str(file))
    base = cache.cache_key(source, ProtocolConfig())
    assert cache.cache_key(source, ProtocolConfig(item_core=3)) != base
    file.write_text(file.read_text() + "u9 1 2 3 4 5\n")
    assert cache.cache_key(source, ProtocolConfig()) != base


def test_failed_prepare_leaves_nothing_on_disk(tmp_path: Path) -> None:
    file = tmp_path / "seq.txt"
    file.write_text("u1 1 2 3\nu2\n")  # a user without items
    with pytest.raises(DataError, match="line 2"):
        cache.prepare(resolve(str(file)), ProtocolConfig(item_core=1), tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_missing_named_dataset_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        resolve("amazon-beauty", tmp_path)
    message = str(error.value)
    assert "reviews_Beauty_5.json.gz" in message and str(tmp_path / "amazon-beauty") in message
    assert "cseweb.ucsd.edu" in message
    with pytest.raises(DataError, match="neither a known dataset"):
        resolve("ml-20m", tmp_path)
