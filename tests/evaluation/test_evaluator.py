import numpy as np
import pytest
import torch

from hymoerec.data.interactions import Interactions
from hymoerec.data.protocol import ProtocolConfig, SequenceData, apply_protocol
from hymoerec.evaluation.baselines import MostPopular, Transition
from hymoerec.evaluation.evaluator import FactorScorer, evaluate, evaluate_rankings


def tiny() -> SequenceData:
    # items are named by their internal id so expectations read directly
    sequences = {
        "a": [1, 2, 3, 4, 5],
        "b": [2, 3, 4, 2, 3],
        "c": [5, 1, 2, 3],
    }
    users, items, times = [], [], []
    for user, seq in sequences.items():
        users += [user] * len(seq)
        items += [str(i) for i in seq]
        times += list(range(len(seq)))
    log = Interactions(np.array(users), np.array(items), np.array(times))
    data = apply_protocol(log, ProtocolConfig(user_core=3, item_core=1))
    assert data.item_ids.external.tolist() == ["1", "2", "3", "4", "5"]
    return data


def oracle_for(data: SequenceData, split: str):  # type: ignore[no-untyped-def]
    """A scorer that knows each user's target, recognising users by their history."""
    part = data.split(split)
    target_of = {
        tuple(part.items[s:e].tolist()): int(t)
        for s, e, t in zip(part.starts, part.ends, part.targets, strict=True)
    }

    def scorer(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(histories.size(0), 6)
        scores[:, 0] = 100.0  # padding scores highest but must never be ranked
        for row, (history, length) in enumerate(zip(histories, lengths, strict=True)):
            scores[row, target_of[tuple(history[:length].tolist())]] = 1.0
        return scores

    return scorer


def test_oracle_ranks_every_target_first_and_padding_is_never_ranked() -> None:
    data = tiny()
    for split in ("valid", "test"):
        result = evaluate(oracle_for(data, split), data, split, max_len=10, batch_size=2)
        assert result.ranks.tolist() == [1, 1, 1]


def test_scorer_sees_truncated_right_padded_histories() -> None:
    data = tiny()
    seen: list[list[int]] = []

    def scorer(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        assert (lengths == (histories != 0).sum(1)).all()
        assert histories.size(1) == lengths.max()  # padded only to the longest history
        seen.extend(histories.tolist())
        return torch.zeros(histories.size(0), 6)

    evaluate(scorer, data, "test", max_len=3, batch_size=8)
    assert sorted(seen) == sorted([[2, 3, 4], [3, 4, 2], [5, 1, 2]])
    seen.clear()
    evaluate(scorer, data, "valid", max_len=4, batch_size=1)
    assert sorted(seen) == sorted([[1, 2, 3], [2, 3, 4], [5, 1]])


def test_results_come_back_in_user_order() -> None:
    data = tiny()

    def last_item_first(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = torch.arange(6, dtype=torch.float32).repeat(histories.size(0), 1)
        return scores  # item 5 best, then 4, 3, ...

    result = evaluate(last_item_first, data, "test", max_len=10, batch_size=1)
    # test targets: a -> 5 (rank 1), b -> 3 (rank 3), c -> 3 (rank 3)
    assert result.ranks.tolist() == [1, 3, 3]


def test_history_exclusion_removes_seen_items_but_not_the_target() -> None:
    data = tiny()

    def history_lover(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(histories.size(0), 6)
        scores.scatter_(1, histories, 1.0)  # every history item outranks the rest
        return scores

    kept = evaluate(history_lover, data, "test", max_len=10)
    excluded = evaluate(history_lover, data, "test", max_len=10, exclude_history=True)
    # user b: test history [2, 3, 4, 2], target 3 (a repeat) ties with 2 and 4
    assert kept.ranks.tolist() == [5, 3, 5]
    # a: target 5 alone outside history, others excluded -> 1 + 0 + 0; b: target 3 is
    # itself a history item, kept in the ranking, others removed -> 1; c: 5, 1, 2 removed,
    # target 3 still ties with 4 -> 2
    assert excluded.ranks.tolist() == [1, 1, 2]


def test_most_popular_counts_training_items_only() -> None:
    data = tiny()
    pop = MostPopular(data)
    # training parts: a [1, 2, 3], b [2, 3, 4], c [5, 1]
    assert pop.counts.tolist() == [0, 2, 2, 2, 1, 1]
    result = evaluate(pop, data, "test", max_len=10)
    # test targets a:5 (count 1 ties with 4), b:3 (ties with 1, 2), c:3
    assert result.ranks.tolist() == [5, 3, 3]


def test_transition_counts_next_items_from_the_last_one() -> None:
    data = tiny()
    model = Transition(data)
    # training pairs: 1->2, 2->3 (twice), 3->4, 5->1; nothing crosses users
    histories = torch.tensor([[2, 0], [5, 1], [4, 0]])
    scores = model(histories, torch.tensor([1, 2, 1]))
    prior = np.array([0, 2, 2, 2, 1, 1]) / 3.0
    np.testing.assert_allclose(scores[0].numpy(), prior + [0, 0, 0, 2, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(scores[1].numpy(), prior + [0, 0, 1, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(scores[2].numpy(), prior, rtol=1e-6)


def test_bad_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="'train'"):
        evaluate(MostPopular(tiny()), tiny(), "train", max_len=5)


def random_data(rng: np.random.Generator, users: int, longest: int, items: int) -> SequenceData:
    """``users`` histories of 3 to ``longest`` items drawn from ``items``, repeats allowed."""
    user_col, item_col, times = [], [], []
    for user in range(users):
        length = int(rng.integers(3, longest + 1))
        user_col += [f"u{user}"] * length
        item_col += rng.integers(1, items + 1, length).astype(str).tolist()
        times += list(range(length))
    log = Interactions(np.array(user_col), np.array(item_col), np.array(times))
    return apply_protocol(log, ProtocolConfig(user_core=3, item_core=1))


@pytest.mark.parametrize("exclude_history", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_ranking_over_item_chunks_equals_the_full_score_matrix(
    exclude_history: bool, chunk: int
) -> None:
    rng = np.random.default_rng(0)
    data = random_data(rng, users=40, longest=11, items=15)
    # small integer vectors: exact dot products, so many items tie with the target
    table = torch.from_numpy(rng.integers(-2, 3, (data.num_items + 1, 3))).float()

    def hidden(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return table[histories].sum(1)  # (B, 3)

    scorer = FactorScorer(hidden, table)
    for split in ("valid", "test"):
        full = evaluate(scorer, data, split, 5, 8, exclude_history)
        chunked = evaluate(scorer, data, split, 5, 8, exclude_history, item_chunk=chunk)
        assert (full.ties > 0).any()
        assert np.array_equal(full.higher, chunked.higher)
        assert np.array_equal(full.ties, chunked.ties)


@pytest.mark.parametrize("chunk", [0, 4])
def test_several_rankings_from_one_pass_equal_one_evaluation_each(chunk: int) -> None:
    """Kept and excluded history from one model pass per batch: the ranks of two separate
    evaluations, for a factor scorer (whole or chunked items) and a plain one."""
    rng = np.random.default_rng(1)
    data = random_data(rng, users=30, longest=9, items=11)
    table = torch.from_numpy(rng.integers(-2, 3, (data.num_items + 1, 3))).float()
    calls = []

    def hidden(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        calls.append(len(histories))
        return table[histories].sum(1)  # (B, 3)

    factor = FactorScorer(hidden, table)
    for scorer in (factor, MostPopular(data)):
        separate = [
            evaluate(scorer, data, "test", 5, 8, exclude, item_chunk=chunk)
            for exclude in (False, True)
        ]
        calls.clear()
        both = evaluate_rankings(scorer, data, "test", 5, 8, (False, True), item_chunk=chunk)
        if scorer is factor:
            assert calls == [8, 8, 8, 6]  # one pass per batch of users for both rankings
        assert not np.array_equal(separate[0].higher, separate[1].higher)
        for one, many in zip(separate, both, strict=True):
            assert np.array_equal(one.higher, many.higher)
            assert np.array_equal(one.ties, many.ties)
    with pytest.raises(ValueError, match="at least one ranking"):
        evaluate_rankings(factor, data, "test", 5, 8, ())


@pytest.mark.parametrize("chunk", [0, 4])
def test_a_bf16_autocast_ranks_by_float32_scores(chunk: int) -> None:
    """The item scores of a factor scorer are float32 products under a bf16 autocast too:
    scores 0.01 apart near 20, one bf16 step (0.125) wide, stay apart."""
    rng = np.random.default_rng(2)
    data = random_data(rng, users=30, longest=9, items=40)
    table = torch.ones(data.num_items + 1, 2)
    table[:, 1] = torch.from_numpy(rng.permutation(data.num_items + 1) * 0.01)
    user = torch.tensor([20.0, 1.0])  # every score is 20 + 0.01 k, k a distinct integer
    scorer = FactorScorer(lambda histories, lengths: user.expand(len(histories), 2), table)
    assert len((table @ user).bfloat16().unique()) <= 5  # what bf16 scores would tie
    exact = evaluate(scorer, data, "test", 5, 8, item_chunk=chunk)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = evaluate(scorer, data, "test", 5, 8, item_chunk=chunk)
    assert not exact.ties.any()
    assert np.array_equal(exact.higher, autocast.higher)
    assert np.array_equal(exact.ties, autocast.ties)
