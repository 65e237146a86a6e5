"""Validation: full rankings of a split by a model under the run's numerics.

``numerics`` is the precision and scan setting that training and validation share;
``validate_rankings`` ranks a split under several rankings (history kept, excluded) from
one model pass per batch of users.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from hymoerec import kernels
from hymoerec.config import TrainConfig
from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.evaluator import FactorScorer, evaluate_rankings
from hymoerec.evaluation.metrics import RankingResult
from hymoerec.models import scan
from hymoerec.models.base import SequentialModel


@contextmanager
def numerics(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """How a forward pass computes: under a bf16 autocast when ``train.bf16``, with the
    compiled scan when ``train.compile_scan``. Training and validation both run in it."""
    with (
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(config.bf16)),
        scan.use(config.compile_scan, config.native_kernels),
        kernels.use(config.native_kernels),
    ):
        yield


def validate(
    model: SequentialModel,
    data: SequenceData,
    split: str,
    max_len: int,
    config: TrainConfig,
    device: torch.device,
    progress: bool = False,
    exclude_history: bool = False,
    seen_penalty: float = 0.0,
) -> RankingResult:
    (result,) = validate_rankings(
        model, data, split, max_len, config, device, (exclude_history,), progress, seen_penalty
    )
    return result


def validate_rankings(
    model: SequentialModel,
    data: SequenceData,
    split: str,
    max_len: int,
    config: TrainConfig,
    device: torch.device,
    exclude_history: tuple[bool, ...] = (False, True),
    progress: bool = False,
    seen_penalty: float = 0.0,
) -> list[RankingResult]:
    """``validate`` under several rankings from one model pass per batch of users."""
    model.eval()
    with numerics(config, device):
        return evaluate_rankings(
            FactorScorer(model.next_item_hidden, model.item_weights()),
            data,
            split,
            max_len,
            config.eval_batch_size,
            exclude_history,
            device,
            progress,
            config.eval_item_chunk,
            seen_penalty,
        )
