"""Non-learned reference recommenders, fitted on the training split only.

They validate the evaluator (their numbers are easy to reason about) and set the floor
every learned model must clear.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.evaluator import Scorer


def _training_items(data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
    """All training interactions as (item, position-within-training-part == 0 flag)."""
    part = data.split("train")
    lengths = part.lengths
    owner = np.repeat(np.arange(data.num_users), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = part.starts[owner] + within
    return np.asarray(part.items)[index], within == 0


class MostPopular:
    """Scores every item by its number of training interactions."""

    def __init__(self, data: SequenceData) -> None:
        items, _ = _training_items(data)
        counts = np.bincount(items, minlength=data.num_items + 1).astype(np.float32)
        self.counts = torch.from_numpy(counts)  # (N + 1,)

    def __call__(self, histories: Tensor, lengths: Tensor) -> Tensor:
        return self.counts.to(histories.device).expand(histories.size(0), -1).clone()


class Transition:
    """Item-to-item transitions: how often each item followed the history's last item.

    score = count(last -> item) + popularity(item) / (max popularity + 1): the popularity
    term is below 1, so it only orders items with equal transition counts (most often
    the many items never seen after ``last``), instead of leaving them tied.
    """

    def __init__(self, data: SequenceData) -> None:
        items, first = _training_items(data)
        sources = items[:-1][~first[1:]]  # consecutive pairs inside one user's training part
        targets = items[1:][~first[1:]]
        size = data.num_items + 1
        pairs, counts = np.unique(sources.astype(np.int64) * size + targets, return_counts=True)
        self.size = size
        self.indptr = np.searchsorted(pairs // size, np.arange(size + 1))  # CSR by source
        self.columns = pairs % size
        self.values = counts.astype(np.float32)
        popularity = np.bincount(items, minlength=size).astype(np.float32)
        self.prior = torch.from_numpy(popularity / (popularity.max() + 1.0))  # (N + 1,) in [0, 1)

    def __call__(self, histories: Tensor, lengths: Tensor) -> Tensor:
        last = histories.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1).cpu().numpy()
        begin, end = self.indptr[last], self.indptr[last + 1]
        counts = end - begin
        rows = np.repeat(np.arange(len(last)), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        entries = np.repeat(begin, counts) + offset
        scores = self.prior.expand(len(last), -1).clone()  # (B, N + 1)
        scores[torch.from_numpy(rows), torch.from_numpy(self.columns[entries])] += torch.from_numpy(
            self.values[entries]
        )
        return scores.to(histories.device)


BASELINES: dict[str, Callable[[SequenceData], Scorer]] = {
    "pop": MostPopular,
    "transition": Transition,
}
