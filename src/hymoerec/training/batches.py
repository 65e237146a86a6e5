"""Training batches: every position of a window trains at once.

Causal models: the inputs are a window of the training part and each position's target
is the item after it, so one forward pass yields every prefix example. Histories longer
than ``max_len`` are cut into windows so that every training target is used once; with
``train.window_stride`` below ``max_len`` the windows overlap and each trains only its
newest ``stride`` targets, so that every target keeps at least ``max_len - stride`` items
of context (a prefix framework gives each target its full ``max_len``).
Masked (bidirectional) models: random items of a window are replaced by a mask token and
predicted.

In a data-parallel run every process draws the same global batches from the shared seed
and builds only its own rows (``rank::world``), so each reads only its share of the
sequences; the loss weights carried by the batch make the all-reduced gradient equal the
gradient of the whole global batch.
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
from hymoerec.schema import ConfigError

LENGTH_MULTIPLE = 8  # a batch's length is rounded up to a multiple of this (up to max_len)


@dataclass(frozen=True)
class TrainBatch:
    items: Tensor  # (B, L) right-padded inputs
    targets: Tensor  # (B, L) item to predict at each position; PAD where nothing is
    # Data parallelism: the mean CE over this process's targets times ``target_weight``,
    # averaged over the processes, is the mean over the global batch's targets; likewise
    # for the auxiliary loss (a mean over sequences). Both are 1 in a single process.
    target_weight: float = 1.0
    sequence_weight: float = 1.0

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
        stride: int = 0,
    ) -> None:
        if masked and stride not in (0, max_len):
            raise ConfigError("train.window_stride: overlapping windows need a causal model")
        if not 0 <= stride <= max_len:
            raise ConfigError(f"train.window_stride={stride}: must be between 0 and {max_len}")
        train = data.split("train")
        self.items = np.asarray(train.items)
        # causal inputs stop one before the end (the last item is only a target)
        ends = train.ends if masked else train.ends - 1
        self.starts, self.ends, self.trained = windows(train.starts, ends, max_len, stride)
        self.batch_size = batch_size
        self.masked = masked
        self.bucket = bucket
        self.max_len = max_len

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    @property
    def num_targets(self) -> int:
        """Next-item targets per epoch (causal models)."""
        return int((self.ends - self.trained).sum())

    def epoch(
        self,
        rng: np.random.Generator,
        mask_token: int = 0,
        mask_prob: float = 0.0,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[TrainBatch]:
        """One epoch of batches; with ``world`` > 1, process ``rank``'s rows of each."""
        for chosen in self._batches(rng):
            lengths = self.ends[chosen] - self.starts[chosen]  # (B,) global batch
            # drawn for the global batch whatever the rank, so every rank's rng stays in step
            masked = self._mask_positions(lengths, rng, mask_prob) if self.masked else None
            # strided, so that a length-bucketed batch splits into shards of similar length
            mine = np.arange(rank, len(chosen), world)
            weight = 1.0
            if len(mine) == 0:  # a last batch smaller than the world: a zero-weight stand-in
                mine, weight = np.zeros(1, dtype=np.int64), 0.0
            starts, ends = self.starts[chosen[mine]], self.ends[chosen[mine]]
            trained = self.trained[chosen[mine]]
            longest = int((ends - starts).max())
            inputs, _ = right_padded(self.items, starts, ends, longest)
            if masked is not None:
                mine_masked = masked[mine, :longest]
                targets = np.where(mine_masked, inputs, PAD)
                inputs = np.where(mine_masked, mask_token, inputs)
                total_targets, local_targets = int(masked.sum()), int(mine_masked.sum())
            else:
                targets, _ = right_padded(self.items, starts + 1, ends + 1, longest)
                # positions before a window's trained part are context only
                context = np.arange(longest)[None, :] < (trained - starts)[:, None]
                targets[context] = PAD
                total_targets = int((self.ends[chosen] - self.trained[chosen]).sum())
                local_targets = int((ends - trained).sum())
            # PAD columns up to a multiple of LENGTH_MULTIPLE: a few shapes of products
            # instead of one per length (oneDNN builds a kernel for every new shape)
            width = min(-(-longest // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, self.max_len)
            if width > longest:
                extra = ((0, 0), (0, width - longest))
                inputs = np.pad(inputs, extra, constant_values=PAD)
                targets = np.pad(targets, extra, constant_values=PAD)
            yield TrainBatch(
                torch.from_numpy(inputs),
                torch.from_numpy(targets),
                target_weight=weight * world * local_targets / total_targets,
                sequence_weight=weight * world * len(mine) / len(chosen),
            )

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
    def _mask_positions(
        lengths: np.ndarray, rng: np.random.Generator, mask_prob: float
    ) -> np.ndarray:
        """(B, longest) positions to mask: each real item with ``mask_prob``."""
        longest = int(lengths.max())
        real = np.arange(longest)[None, :] < lengths[:, None]
        masked = real & (rng.random((len(lengths), longest)) < mask_prob)
        # every window predicts at least one item: mask its last real item when none drew
        none = ~masked.any(axis=1)
        masked[np.flatnonzero(none), lengths[none] - 1] = True
        return masked
