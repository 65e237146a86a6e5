"""The learning-rate schedule: linear warm-up, then constant or cosine decay to zero."""

import math
from pathlib import Path

import pytest
import torch

from hymoerec.config import ConfigError, TrainConfig
from hymoerec.training import loop
from hymoerec.training.loop import lr_factor


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


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("flags : fpu avx512f avx512_bf16\n", True),
        ("flags : amx_bf16\n", True),
        ("flags : avx2\n", False),
    ],
)
def test_bf16_auto_follows_the_cpu_flags_and_an_explicit_choice_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str, native: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(flags)
    monkeypatch.setattr(loop, "CPUINFO", cpuinfo)
    cpu = torch.device("cpu")
    assert loop.native_bf16(cpu) is native
    assert loop.resolve_bf16(TrainConfig(bf16=None), cpu).bf16 is native
    assert loop.resolve_bf16(TrainConfig(bf16=False), cpu).bf16 is False
    assert loop.resolve_bf16(TrainConfig(bf16=True), cpu).bf16 is True
    monkeypatch.setattr(loop, "CPUINFO", tmp_path / "missing")  # not Linux: no auto bf16
    assert loop.native_bf16(cpu) is False
