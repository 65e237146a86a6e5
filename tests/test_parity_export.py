"""The parity harness's export to RecBole atomic files (benchmarks/parity/export.py):
RecBole must rebuild exactly our sequences from it. Runs without RecBole installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from hymoerec.data.interactions import Interactions
from hymoerec.data.protocol import ProtocolConfig, SequenceData, apply_protocol

PARITY = Path(__file__).resolve().parents[1] / "benchmarks" / "parity"
spec = importlib.util.spec_from_file_location("parity_export", PARITY / "export.py")
assert spec is not None and spec.loader is not None
export = importlib.util.module_from_spec(spec)
sys.modules["parity_export"] = export
spec.loader.exec_module(export)


def tied_log(seed: int) -> Interactions:
    """Five users of 6-9 interactions over six items, timestamps full of ties and ids
    that sort differently as strings and as numbers."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in ("10", "2", "33", "4", "5"):
        for _ in range(int(rng.integers(6, 10))):
            rows.append(
                (user, str(int(rng.choice([1, 2, 11, 20, 100, 7]))), int(rng.integers(0, 3)))
            )
    order = rng.permutation(len(rows))
    user, item, time = zip(*(rows[i] for i in order), strict=True)
    return Interactions(np.array(user), np.array(item), np.array(time, dtype=np.int64))


def sequences(data: SequenceData) -> dict[int, list[int]]:
    return {u: data.sequence(u).tolist() for u in range(data.num_users)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_keeps_every_sequence(tmp_path: Path, seed: int) -> None:
    data = apply_protocol(tied_log(seed), ProtocolConfig(user_core=3, item_core=1))
    path = export.export_atomic(data, tmp_path, "tiny")
    assert path == tmp_path / "tiny" / "tiny.inter"
    assert export.read_atomic(path) == sequences(data)
    assert [p.name for p in path.parent.iterdir()] == ["tiny.inter"]  # no temporary left


def test_recbole_sort_of_shuffled_rows_restores_our_order(tmp_path: Path) -> None:
    """RecBole sorts by (user, timestamp); positions as timestamps make that order ours
    whatever order the rows come in, since no two rows of a user share a timestamp."""
    data = apply_protocol(tied_log(3), ProtocolConfig(user_core=3, item_core=1))
    path = export.export_atomic(data, tmp_path, "tiny")
    header, *lines = path.read_text().splitlines()
    assert header.split("\t") == ["user_id:token", "item_id:token", "timestamp:float"]
    rows = np.array([[int(v) for v in line.split("\t")] for line in lines])
    rows = rows[np.random.default_rng(0).permutation(len(rows))]
    for user, sequence in sequences(data).items():
        mine = rows[rows[:, 0] == user]
        assert len(np.unique(mine[:, 2])) == len(mine)  # timestamps unique per user
        assert mine[np.argsort(mine[:, 2]), 1].tolist() == sequence
    assert len(rows) == data.num_interactions


def test_export_of_the_real_ml100k(tmp_path: Path, shared_data: Path) -> None:
    from hymoerec.data.cache import load_dataset

    _, data = load_dataset("ml-100k", shared_data, tmp_path / "cache", ProtocolConfig())
    path = export.export_atomic(data, tmp_path / "atomic", "parity-ml-100k")
    rebuilt = export.read_atomic(path)
    assert len(rebuilt) == data.num_users == 943
    assert sum(map(len, rebuilt.values())) == data.num_interactions
    assert all(rebuilt[u] == data.sequence(u).tolist() for u in range(data.num_users))
    # already 5-core: RecBole's [5, inf) filters have nothing to remove
    counts = np.bincount(data.items, minlength=data.num_items + 1)[1:]
    assert counts.min() >= 5 and data.lengths.min() >= 5


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = apply_protocol(tied_log(0), ProtocolConfig(user_core=3, item_core=1))

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.np, "savetxt", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export.export_atomic(data, tmp_path, "tiny")
    assert list((tmp_path / "tiny").iterdir()) == []
