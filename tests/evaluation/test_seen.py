"""The learned penalty on seen items: its likelihood, its fit, and the ranking it gives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hymoerec.data.interactions import Interactions
from hymoerec.data.protocol import ProtocolConfig, apply_protocol
from hymoerec.evaluation.evaluator import FactorScorer, evaluate
from hymoerec.evaluation.seen import _nll, fit_penalty, fit_seen_penalty, user_terms
from tests.evaluation.test_evaluator import tiny


def history_lover(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Every item of the (cut) history scores 1, the rest 0, item 4 scores 0.5."""
    scores = torch.zeros(histories.size(0), 6)
    scores[:, 4] = 0.5
    scores.scatter_(1, histories, 1.0)
    return scores


def test_nll_is_the_cross_entropy_of_the_penalised_scores() -> None:
    scores = torch.tensor([[0.0, 2.0, 1.0, -1.0, 0.5]])  # item 0 is padding
    seen = torch.tensor([[False, True, False, True, False]])
    target = 3  # a seen item
    for p in (0.0, 0.7, 3.0):
        penalised = scores[:, 1:] - p * seen[:, 1:].float()
        expected = -torch.log_softmax(penalised, 1)[0, target - 1].item()
        s = scores[0, 1:]
        lu = torch.logsumexp(s[~seen[0, 1:]], 0).item()
        ls = torch.logsumexp(s[seen[0, 1:]], 0).item()
        got = _nll(p, np.array([-1.0]), np.array([1.0]), np.array([lu]), np.array([ls]))
        assert got == pytest.approx(expected, abs=1e-6)


def test_fit_matches_a_fine_grid_search() -> None:
    rng = np.random.default_rng(0)
    n = 400
    s_y, lu, ls = rng.normal(0, 1, n), rng.normal(3, 1, n), rng.normal(3, 1, n)
    seen_y = (rng.random(n) < 0.1).astype(float)  # a tenth of the targets are returns
    fit = fit_penalty(s_y, seen_y, lu, ls)
    grid = np.linspace(0, 30, 30001)
    best = grid[np.argmin([_nll(p, s_y, seen_y, lu, ls) for p in grid])]
    assert 0 < fit.penalty < 30
    assert fit.penalty == pytest.approx(best, abs=2e-3)
    assert fit.nll_after <= fit.nll_before
    assert fit.target_seen == pytest.approx(seen_y.mean())


def test_no_returns_push_seen_items_to_the_limit_and_only_returns_keep_them() -> None:
    rng = np.random.default_rng(1)
    s_y, lu, ls = rng.normal(0, 1, 50), rng.normal(3, 1, 50), rng.normal(3, 1, 50)
    endless = fit_penalty(s_y, np.zeros(50), lu, ls)
    assert endless.penalty == math.inf
    # the infimum of the NLL: every seen item's probability gone
    assert endless.nll_after == pytest.approx(np.mean(-s_y + lu))
    assert endless.nll_after < _nll(5.0, s_y, np.zeros(50), lu, ls) < endless.nll_before
    assert fit_penalty(s_y, np.ones(50), lu, ls).penalty == 0.0


def test_terms_come_from_the_history_and_the_target() -> None:
    data = tiny()  # valid histories: a [1, 2, 3] -> 4, b [2, 3, 4] -> 2, c [5, 1] -> 2
    s_y, seen_y, lu, ls = user_terms(history_lover, data, "valid", max_len=10)
    assert seen_y.tolist() == [0.0, 1.0, 0.0]
    assert s_y.tolist() == [0.5, 1.0, 0.0]
    # user a: seen {1, 2, 3} score 1; unseen 4 (0.5) and 5 (0)
    assert ls[0] == pytest.approx(np.log(3 * np.e))
    assert lu[0] == pytest.approx(np.log(np.exp(0.5) + 1))


def test_penalty_ranks_seen_items_lower_target_included() -> None:
    """The penalty never looks at the target: a target the user has seen drops too."""
    data = tiny()  # test: a [1, 2, 3, 4] -> 5, b [2, 3, 4, 2] -> 3 (seen), c [5, 1, 2] -> 3
    kept = evaluate(history_lover, data, "test", max_len=10)
    assert kept.ranks.tolist() == [5, 3, 5]
    penalised = evaluate(history_lover, data, "test", max_len=10, seen_penalty=5.0)
    # a: 5 ties with nothing above it once 1-4 drop -> 1; b: 3 is seen, drops with 2 and 4
    # below unseen 1 and 5 -> 1 + 2 + ties with 2 and 4 = 5; c: 1, 2, 5 drop, 4 (0.5) > 3
    assert penalised.ranks.tolist() == [1, 5, 2]


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_penalised_ranking_over_item_chunks_equals_the_full_matrix(chunk: int) -> None:
    rng = np.random.default_rng(2)
    users, items, times = [], [], []
    for user in range(30):
        length = int(rng.integers(3, 12))
        users += [f"u{user}"] * length
        items += rng.integers(1, 12, length).astype(str).tolist()  # repeats happen
        times += list(range(length))
    data = apply_protocol(
        Interactions(np.array(users), np.array(items), np.array(times)),
        ProtocolConfig(user_core=3, item_core=1),
    )
    table = torch.from_numpy(rng.integers(-2, 3, (data.num_items + 1, 3))).float()
    scorer = FactorScorer(lambda h, n: table[h].sum(1), table)
    for penalty in (1.0, 2.0, math.inf):
        full = evaluate(scorer, data, "test", 5, 8, seen_penalty=penalty)
        chunked = evaluate(scorer, data, "test", 5, 8, item_chunk=chunk, seen_penalty=penalty)
        assert np.array_equal(full.higher, chunked.higher)
        assert np.array_equal(full.ties, chunked.ties)
        assert not np.array_equal(full.ranks, evaluate(scorer, data, "test", 5, 8).ranks)


def test_fit_on_real_ml100k_asks_for_the_largest_penalty(
    shared_data: Path, cache_root: Path
) -> None:
    """MovieLens users rate a film once: no validation target is a seen item, so the
    likelihood keeps rising with the penalty."""
    from hymoerec.data.cache import load_dataset

    _, data = load_dataset("ml-100k", shared_data, cache_root, ProtocolConfig())

    def lover(histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(histories.size(0), data.num_items + 1)
        return scores.scatter_(1, histories, 1.0)

    fit = fit_seen_penalty(lover, data, max_len=50)
    assert fit.target_seen == 0.0
    assert fit.penalty == math.inf
    assert fit.nll_after < fit.nll_before
