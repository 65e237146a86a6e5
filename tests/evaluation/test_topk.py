import pytest
import torch

from hymoerec.evaluation.topk import chunked_topk


def reference(
    hidden: torch.Tensor, weights: torch.Tensor, k: int, exclude: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = hidden @ weights.T  # (B, N + 1), the whole matrix at once
    scores[:, 0] = -torch.inf
    if exclude is not None:
        keep_pad = scores[:, 0].clone()
        scores.scatter_(1, exclude, -torch.inf)
        scores[:, 0] = keep_pad
    return scores.topk(min(k, weights.size(0) - 1), dim=1)


@pytest.mark.parametrize("chunk", [1, 7, 50, 1000])
@pytest.mark.parametrize("with_exclusion", [False, True])
def test_equals_topk_over_the_full_score_matrix(chunk: int, with_exclusion: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 8, generator=generator)
    weights = torch.randn(101, 8, generator=generator)
    weights[0] = 10 * hidden.mean(0)  # padding would otherwise be everyone's favourite
    exclude = None
    if with_exclusion:
        exclude = torch.randint(1, 101, (6, 12), generator=generator)
        exclude[:, -3:] = 0  # padded exclusion lists
    scores, ids = chunked_topk(hidden, weights, 10, exclude, chunk=chunk)
    want_scores, want_ids = reference(hidden, weights, 10, exclude)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(scores, want_scores)
    assert not (ids == 0).any()
    if exclude is not None:
        assert not (ids[:, :, None] == exclude[:, None, :]).any()


def test_k_is_capped_at_the_catalogue_and_unfillable_slots_are_padding() -> None:
    hidden = torch.ones(2, 3)
    weights = torch.arange(15.0).reshape(5, 3)  # items 1..4, higher id scores higher
    exclude = torch.tensor([[0, 0, 0], [4, 3, 2]])
    scores, ids = chunked_topk(hidden, weights, 10, exclude, chunk=2)
    assert ids.tolist() == [[4, 3, 2, 1], [1, 0, 0, 0]]
    assert torch.isinf(scores[1, 1:]).all() and torch.isfinite(scores[0]).all()


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k=0"):
        chunked_topk(torch.ones(1, 2), torch.ones(3, 2), 0)
