"""Training batches: every position of a window trains at once.

Causal models: the inputs are a window of the training part and each position's target
is the item after it, so one forward pass yields every prefix example. Histories longer
than ``max_len`` are cut into windows so that every training target is used once.
Masked (bidirectional) models: random items of a window are replaced by a mask token and
predicted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hymoerec.data.batches import right_padded, windows
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData


@dataclass(frozen=True)
class TrainBatch:
    items: Tensor  # (B, L) right-padded inputs
    targets: Tensor  # (B, L) item to predict at each position; PAD where nothing is

    @property
    def num_targets(self) -> int:
        return int((self.targets != PAD).sum())


class BatchSampler:
    """Shuffled training windows of one dataset, as right-padded tensors."""

    def __init__(
        self,
        data: SequenceData,
        max_len: int,
        batch_size: int,
        masked: bool,
        bucket: int = 0,
    ) -> None:
        train = data.split("train")
        self.items = np.asarray(train.items)
        # causal inputs stop one before the end (the last item is only a target)
        ends = train.ends if masked else train.ends - 1
        self.starts, self.ends = windows(train.starts, ends, max_len)
        self.batch_size = batch_size
        self.masked = masked
        self.bucket = bucket

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    @property
    def num_targets(self) -> int:
        """Next-item targets per epoch (causal models)."""
        return int((self.ends - self.starts).sum())

    def epoch(
        self, rng: np.random.Generator, mask_token: int = 0, mask_prob: float = 0.0
    ) -> Iterator[TrainBatch]:
        for chosen in self._batches(rng):
            starts, ends = self.starts[chosen], self.ends[chosen]
            longest = int((ends - starts).max())
            inputs, _ = right_padded(self.items, starts, ends, longest)
            if self.masked:
                yield self._mask(inputs, rng, mask_token, mask_prob)
            else:
                targets, _ = right_padded(self.items, starts + 1, ends + 1, longest)
                yield TrainBatch(torch.from_numpy(inputs), torch.from_numpy(targets))

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Shuffled window indices cut into batches. With ``bucket`` > 0, each run of
        ``bucket`` batches is sorted by window length before it is cut, so a batch holds
        windows of similar length and little padding; batch order is then shuffled."""
        order = rng.permutation(len(self.starts))
        if self.bucket:
            span = self.bucket * self.batch_size
            lengths = self.ends - self.starts
            for first in range(0, len(order), span):
                part = order[first : first + span]
                order[first : first + span] = part[np.argsort(lengths[part], kind="stable")]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.bucket:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    @staticmethod
    def _mask(
        inputs: np.ndarray, rng: np.random.Generator, mask_token: int, mask_prob: float
    ) -> TrainBatch:
        real = inputs != PAD
        masked = real & (rng.random(inputs.shape) < mask_prob)
        # every window predicts at least one item: mask its last real item when none drew
        lengths = real.sum(axis=1)
        none = ~masked.any(axis=1)
        masked[np.flatnonzero(none), lengths[none] - 1] = True
        targets = np.where(masked, inputs, PAD)
        items = np.where(masked, mask_token, inputs)
        return TrainBatch(torch.from_numpy(items), torch.from_numpy(targets))
