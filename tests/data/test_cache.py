import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hymoerec.artifacts import ArtifactError
from hymoerec.data import cache
from hymoerec.data.errors import DataError
from hymoerec.data.protocol import ProtocolConfig
from hymoerec.data.registry import resolve

OUT = {"capture_output": True, "text": True, "check": True}


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


# ------------------------------------------------------ damaged entries, failed writes


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "checksum mismatch"),
        (lambda p: p.write_bytes(b""), "checksum mismatch"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\x07"), "checksum mismatch"),
        (lambda p: p.unlink(), "missing from the prepared dataset"),
    ],
)
def test_damaged_cache_entry_is_reported_by_name(tmp_path: Path, damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "seq.txt"
    write_sequences(file)
    source, protocol = resolve(str(file)), ProtocolConfig(user_core=3, item_core=1)
    cache.prepare(source, protocol, tmp_path / "cache")
    entry = tmp_path / "cache" / cache.cache_key(source, protocol)
    damage(entry / "items.npy")
    with pytest.raises(ArtifactError) as info:
        cache.prepare(source, protocol, tmp_path / "cache")
    message = str(info.value)
    assert f"{entry / 'items.npy'}: {problem}" in message
    assert f"delete {entry}" in message and "\n" not in message


def test_entry_without_checksums_still_loads_but_inconsistent_arrays_do_not(
    tmp_path: Path,
) -> None:
    file = tmp_path / "seq.txt"
    write_sequences(file)
    source, protocol = resolve(str(file)), ProtocolConfig(user_core=3, item_core=1)
    fresh = cache.prepare(source, protocol, tmp_path / "cache")
    entry = tmp_path / "cache" / cache.cache_key(source, protocol)
    meta = json.loads((entry / "meta.json").read_text())
    del meta["sha256"]  # as written before checksums were recorded
    (entry / "meta.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(cache.load(entry).items, fresh.items)
    np.save(entry / "items.npy", np.asarray(fresh.items)[:-1])  # a valid array, too short
    with pytest.raises(ArtifactError, match="arrays do not fit together"):
        cache.load(entry)


def test_disk_full_while_caching_names_the_entry_and_leaves_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "seq.txt"
    write_sequences(file)
    real_save = np.save
    calls = []

    def full_disk(path, array):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(path, array)

    monkeypatch.setattr(cache.np, "save", full_disk)
    root = tmp_path / "cache"
    source, protocol = resolve(str(file)), ProtocolConfig(user_core=3, item_core=1)
    with pytest.raises(ArtifactError) as info:
        cache.prepare(source, protocol, root)
    entry = root / cache.cache_key(source, protocol)
    assert str(info.value) == f"{entry}: cannot write: No space left on device"
    assert list(root.iterdir()) == []


def test_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    file = tmp_path / "seq.txt"
    write_sequences(file)
    source, protocol = resolve(str(file)), ProtocolConfig(user_core=3, item_core=1)
    root = tmp_path / "cache"
    key = cache.cache_key(source, protocol)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **OUT)
    orphan = root / f".{key}.tmp-{int(dead.stdout)}-abc123"  # a writer killed mid-write
    running = root / f".{key}.tmp-{os.getpid()}-def456"  # a writer still at work
    for folder in (orphan, running):
        folder.mkdir(parents=True)
        (folder / "offsets.npy").write_bytes(b"partial")
    cache.prepare(source, protocol, root)
    assert sorted(p.name for p in root.iterdir()) == sorted([key, running.name])


def test_interrupted_prepare_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "seq.txt"
    write_sequences(file)

    def interrupt(path, array):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        cache.prepare(resolve(str(file)), ProtocolConfig(user_core=3, item_core=1), tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
