import math

import numpy as np
import pytest
import torch

from hymoerec.evaluation.metrics import RankingResult, parse_metric, target_ranks


def ranks_of(scores: torch.Tensor, targets: torch.Tensor) -> list[int]:
    higher, ties = target_ranks(scores, targets)
    return (1 + higher + ties).tolist()


def test_ranks_count_ties_against_the_model() -> None:
    scores = torch.tensor(
        [
            [-torch.inf, 0.9, 0.5, 0.5, 0.1],  # target 2 ties with item 3: rank 1 + 1 + 1 = 3
            [-torch.inf, 0.9, 0.5, 0.5, 0.1],  # target 1 is strictly best: rank 1
            [-torch.inf, 0.2, 0.2, 0.2, 0.2],  # all tied: target ranked last of 4
            [-torch.inf, 0.3, 0.1, 0.2, 0.0],  # target 4 scores lowest: rank 4
        ]
    )
    targets = torch.tensor([2, 1, 3, 4])
    assert ranks_of(scores, targets) == [3, 1, 4, 4]


def result_from_ranks(ranks: list[int]) -> RankingResult:
    r = np.array(ranks)
    return RankingResult(users=np.arange(len(r)), higher=r - 1, ties=np.zeros_like(r))


def test_metric_values_from_hand_computed_ranks() -> None:
    result = result_from_ranks([1, 3, 10, 11])
    summary = result.summary(["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@10"])
    assert summary["HR@1"] == pytest.approx(1 / 4)
    assert summary["HR@5"] == pytest.approx(2 / 4)
    assert summary["HR@10"] == pytest.approx(3 / 4)
    assert summary["NDCG@5"] == pytest.approx((1 + 1 / 2) / 4)  # 1/log2(2), 1/log2(4)
    assert summary["NDCG@10"] == pytest.approx((1 + 1 / 2 + 1 / math.log2(11)) / 4)
    assert summary["MRR@10"] == pytest.approx((1 + 1 / 3 + 1 / 10) / 4)
    assert result.per_user("HR@10").tolist() == [1.0, 1.0, 1.0, 0.0]


def test_expected_ties_equal_pessimistic_without_ties() -> None:
    result = result_from_ranks([1, 2, 4, 7, 30])
    for metric in ("HR@5", "NDCG@10", "MRR@10"):
        np.testing.assert_allclose(
            result.per_user(metric, "expected"), result.per_user(metric, "pessimistic")
        )


def test_constant_scores() -> None:
    n, users = 50, 200
    scores = torch.zeros(users, n + 1)
    scores[:, 0] = -torch.inf
    targets = torch.randint(1, n + 1, (users,))
    higher, ties = target_ranks(scores, targets)
    result = RankingResult.from_tensors(np.arange(users), higher, ties)
    assert (result.ranks == n).all()
    # pessimistic: every target at rank N, so HR@10 = 0 (never 1)
    assert result.summary(["HR@10"])["HR@10"] == 0.0
    # expected over random tie orders: exactly 10 / N, and NDCG@10 the mean gain of ranks 1..10
    expected = result.summary(["HR@10", "NDCG@10"], ties="expected")
    assert expected["HR@10"] == pytest.approx(10 / n)
    assert expected["NDCG@10"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 11)) / n)


def test_expected_ties_by_hand() -> None:
    # 2 items above, target tied with 3 others: ranks 3..6 equally likely
    result = RankingResult(np.arange(1), higher=np.array([2]), ties=np.array([3]))
    assert result.per_user("HR@4", "expected")[0] == pytest.approx(2 / 4)  # ranks 3, 4
    assert result.per_user("MRR@10", "expected")[0] == pytest.approx(
        (1 / 3 + 1 / 4 + 1 / 5 + 1 / 6) / 4
    )
    assert result.per_user("HR@4")[0] == 0.0  # pessimistic rank 6


@pytest.mark.parametrize("bad", ["HR", "HR@0", "AUC@10", "NDCG@x"])
def test_bad_metric_names_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="bad metric"):
        parse_metric(bad)
