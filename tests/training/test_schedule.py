"""The learning-rate schedule: linear warm-up, then constant or cosine decay to zero."""

import math

import pytest

from hymoerec.config import ConfigError, TrainConfig
from hymoerec.training.schedule import lr_factor


def test_warm_up_then_constant() -> None:
    assert [lr_factor(4, 100, "constant", s) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert lr_factor(0, 100, "constant", 0) == 1.0


def test_cosine_reaches_half_midway_and_zero_at_the_end() -> None:
    assert lr_factor(10, 110, "cosine", 10) == 1.0
    assert lr_factor(10, 110, "cosine", 60) == pytest.approx(0.5)
    assert lr_factor(10, 110, "cosine", 35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(10, 110, "cosine", 110) == pytest.approx(0.0)
    assert lr_factor(10, 110, "cosine", 500) == pytest.approx(0.0)  # never negative


def test_unknown_schedule_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"train\.schedule='linear'"):
        TrainConfig(schedule="linear")
