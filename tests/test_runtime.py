"""The device and thread rules every computing command goes through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hymoerec import runtime
from hymoerec.cli import main
from hymoerec.runtime import DeviceError, configure_threads, default_threads, resolve_device


def test_default_threads_follow_free_physical_cores() -> None:
    eight = set(range(8))
    # a quiet machine: one thread per physical core, not per hyper-thread
    assert default_threads(eight, load=0.0, processes=1, cores=4) == 4
    # other processes keep 3 CPUs busy: 5 left, still at most the 4 cores
    assert default_threads(eight, load=3.2, processes=1, cores=4) == 4
    # load 7 on 8 CPUs: one CPU free, one thread (torch's default would spin 8)
    assert default_threads(eight, load=7.0, processes=1, cores=4) == 1
    # an affinity mask of 2 CPUs bounds it whatever the machine has
    assert default_threads({0, 1}, load=0.0, processes=1, cores=2) == 2
    # a torchrun job of 2 processes shares the free cores; never below 1
    assert default_threads(eight, load=0.0, processes=2, cores=8) == 4
    assert default_threads(eight, load=30.0, processes=4, cores=8) == 1


def test_threads_option_overrides_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_threads(3) == 3 and torch.get_num_threads() == 3
        assert configure_threads(None) == torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert configure_threads(None) == torch.get_num_threads() >= 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="--threads -1"):
        configure_threads(-1)


def test_an_unusable_device_is_a_clear_error(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DeviceError, match="'tpu': expected auto, cpu or cuda"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert main(["train", "--model", "sasrec", "--dataset", "ml-100k", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert "train.device 'tpu'" in err and "Traceback" not in err
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    with pytest.raises(DeviceError, match="use --device cpu"):
        resolve_device("cuda")
    assert main(["recommend", str(tiny_run), "--user", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "has no CUDA support; use --device cpu" in err and "Traceback" not in err


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
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)
    cpu = torch.device("cpu")
    assert runtime.native_bf16(cpu) is native
    assert runtime.resolve_bf16(None, cpu) is native
    assert runtime.resolve_bf16(False, cpu) is False
    assert runtime.resolve_bf16(True, cpu) is True
    monkeypatch.setattr(runtime, "CPUINFO", tmp_path / "missing")  # not Linux: no auto bf16
    assert runtime.native_bf16(cpu) is False


def test_onednn_keeps_more_kernels_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    runtime.configure_threads(1)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(runtime.PRIMITIVE_CACHE)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    runtime.configure_threads(1)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
