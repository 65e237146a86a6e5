"""The two schedules of a run, as pure functions of the optimizer step: the learning-rate
multiplier and the fusion warm-up factor of the paper's Adaptive Expert Fusion."""

from __future__ import annotations

import math

from hymoerec.models.base import SequentialModel
from hymoerec.models.moe import warmup_scale


def lr_factor(warmup: int, total: int, schedule: str, step: int) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: linear warm-up over
    ``warmup`` steps, then constant or a cosine decay that reaches 0 at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def fusion_scale(model: SequentialModel, step: int) -> float:
    """min(1, t / T_warmup): the fusion warm-up factor of the paper's Adaptive Expert Fusion."""
    warmup = model.fusion_warmup_steps
    return 1.0 if warmup <= 0 else warmup_scale(step, warmup)
