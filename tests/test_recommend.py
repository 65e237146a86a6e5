"""The Python recommendation API on a tiny model trained on the real ML-100K."""

from pathlib import Path

import numpy as np
import pytest
import torch

from hymoerec.artifacts import ArtifactError
from hymoerec.evaluation.evaluator import evaluate
from hymoerec.recommend import Recommender, RecommendError, UnknownIdError


@pytest.fixture(scope="module")
def recommender(tiny_run: Path) -> Recommender:
    torch.set_num_threads(1)
    return Recommender.load(tiny_run, device="cpu")


def test_load_uses_only_the_run_directory(recommender: Recommender, tiny_run: Path) -> None:
    assert (tiny_run / "dataset" / "meta.json").is_file()
    assert recommender.num_items == 1349 and recommender.data.num_users == 943
    assert recommender.max_len == 20


def test_metadata_travels_with_the_run(recommender: Recommender) -> None:
    assert recommender.item("1") == {
        "item_id": "1",
        "interactions": int(recommender.popularity[recommender.data.item_ids.to_internal("1")[0]]),
        "title": "Toy Story (1995)",
        "genres": ["Animation", "Children's", "Comedy"],
    }
    assert recommender.item(50)["genres"] == ["Action", "Adventure"]
    top = recommender.recommend(["50"], k=recommender.num_items - 1, exclude_seen=True)
    titled = {item: meta for item, meta in zip(top.items, top.metadata, strict=True) if meta}
    assert titled == {
        "1": {"title": "Toy Story (1995)", "genres": ["Animation", "Children's", "Comedy"]}
    }


def test_recommendation_equals_the_evaluators_ranking(recommender: Recommender) -> None:
    data, model = recommender.data, recommender.model
    result = evaluate(lambda items, lengths: model.score(items, lengths), data, "test", 20)
    test = data.split("test")
    users = np.arange(0, data.num_users, 97)
    for user in users:
        history = data.item_ids.to_external(test.items[test.starts[user] : test.ends[user]])
        ranked = recommender.recommend(list(history), k=data.num_items, exclude_seen=False)
        target = data.item_ids.to_external(test.targets[user])
        # no ties among float scores here: the evaluator's rank is 1 + #higher
        assert ranked.items.index(target) == result.higher[user]
        assert ranked.scores == sorted(ranked.scores, reverse=True)


def test_exclude_seen_removes_the_whole_history(recommender: Recommender) -> None:
    history = recommender.user_history("1")
    assert len(history) > recommender.max_len  # longer than the model's window
    k = recommender.num_items - len(set(history))
    kept = recommender.recommend(history, k=recommender.num_items, exclude_seen=True)
    assert len(kept.items) == k and not set(kept.items) & set(history)
    everything = recommender.recommend(history, k=recommender.num_items, exclude_seen=False)
    assert sorted(everything.items, key=int) == sorted(
        recommender.data.item_ids.external.tolist(), key=int
    )


def test_only_the_most_recent_items_reach_the_model(recommender: Recommender) -> None:
    history = recommender.user_history("1")
    full = recommender.recommend(history, k=10, exclude_seen=False)
    recent = recommender.recommend(history[-20:], k=10, exclude_seen=False)
    assert full.items == recent.items and full.history_length == 20
    assert full.scores == pytest.approx(recent.scores)


def test_unknown_ids_are_dropped_and_reported(recommender: Recommender) -> None:
    clean = recommender.recommend(["1", "50"], k=5)
    noisy = recommender.recommend(["no-such", "1", 99999, "50"], k=5)
    assert noisy.unknown == ["no-such", "99999"]
    assert noisy.items == clean.items and noisy.fallback is None
    assert noisy.history_length == 2


def test_empty_or_unknown_history_falls_back_to_popularity(recommender: Recommender) -> None:
    counts = np.bincount(recommender.data.items, minlength=recommender.num_items + 1)[1:]
    most = recommender.data.item_ids.to_external(np.argsort(-counts, kind="stable")[:5] + 1)
    empty = recommender.recommend([], k=5)
    assert empty.items == most.tolist() and empty.fallback == "empty history: most popular items"
    assert empty.scores == sorted(empty.scores, reverse=True)
    lost = recommender.recommend(["nope"], k=5)
    assert lost.items == most.tolist() and lost.unknown == ["nope"]
    assert lost.fallback is not None and "no known item" in lost.fallback


def test_recommend_users_uses_the_full_history(recommender: Recommender) -> None:
    [by_user] = recommender.recommend_users(["7"], k=10)
    by_history = recommender.recommend(recommender.user_history("7"), k=10)
    assert by_user == by_history
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        recommender.recommend_users(["ghost"])


def test_batched_calls_equal_single_calls(recommender: Recommender) -> None:
    histories = [recommender.user_history(u)[:n] for u, n in (("1", 5), ("2", 40), ("3", 1))]
    batch = recommender.recommend_many(
        [*histories, []], k=[3, 7, 5, 2], exclude_seen=[True, False, True, True]
    )
    singles = [
        recommender.recommend(histories[0], 3, True),
        recommender.recommend(histories[1], 7, False),
        recommender.recommend(histories[2], 5, True),
        recommender.recommend([], 2, True),
    ]
    for got, want in zip(batch, singles, strict=True):
        assert got.items == want.items
        assert got.scores == pytest.approx(want.scores, abs=1e-5)


@pytest.mark.parametrize("k", [0, -1, 1350, True])
def test_k_out_of_bounds_is_an_error(recommender: Recommender, k: int) -> None:
    with pytest.raises(RecommendError, match="k="):
        recommender.recommend(["1"], k=k)


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a run directory"):
        Recommender.load(tmp_path)
