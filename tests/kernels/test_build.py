"""Building and caching the native kernels (hymoerec.kernels): a corrupt cache, a
missing or failing compiler, and processes that build at once."""

import multiprocessing
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hymoerec import kernels
from hymoerec.models import scan, scan_kernel
from hymoerec.models.mamba import SelectiveScan
from tests.models.test_mamba import scan_inputs


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test builds into its own cache and starts with nothing loaded."""
    monkeypatch.setenv("HYMOEREC_CACHE", str(tmp_path))
    saved = dict(scan._state)
    kernels.load.cache_clear()
    scan_kernel.library.cache_clear()
    yield tmp_path / "kernels"
    kernels.load.cache_clear()
    scan_kernel.library.cache_clear()
    scan._state.update(saved)


def fake_compiler(folder: Path, script: str) -> str:
    path = folder / "fake-cc"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_build_leaves_one_library_and_a_second_load_reuses_it(private_cache: Path) -> None:
    kernels.load("scan")
    (built,) = private_cache.iterdir()
    assert built.name.startswith("scan-") and built.suffix == ".so"
    modified = built.stat().st_mtime_ns
    kernels.load.cache_clear()
    kernels.load("scan")
    assert [p.name for p in private_cache.iterdir()] == [built.name]
    assert built.stat().st_mtime_ns == modified  # not built again


def test_a_corrupt_cached_library_is_built_again() -> None:
    target = kernels.library_path("scan")  # not loaded by this process yet
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x7fELF truncated")
    lib = kernels.load("scan")
    assert hasattr(lib, "mixer_forward")
    assert target.stat().st_size > 1000


def test_no_compiler_is_a_clear_error_and_the_scan_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(kernels.KernelUnavailable, match="/nonexistent/cc"):
        kernels.load("scan")
    inputs = scan_inputs(batch=2, length=9)
    with scan.use(True), pytest.warns(RuntimeWarning, match="scan kernel unavailable"):
        y = scan.training_scan(*inputs)
    assert scan._state["native_failed"]  # once: later scans go straight to the chunks
    torch.testing.assert_close(y, SelectiveScan.apply(*inputs))


def test_a_failed_build_names_the_error_and_leaves_nothing_in_the_cache(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a compiler that writes half a library, reports an error and fails
    script = (
        'out=""; take=0\n'
        'for a in "$@"; do if [ $take = 1 ]; then out=$a; fi; take=0; '
        'if [ "$a" = "-o" ]; then take=1; fi; done\n'
        'case "$*" in *--version*) echo fake 1.0; exit 0;; esac\n'
        'echo half > "$out"; echo "scan.c:1: error: disk full" >&2; exit 1\n'
    )
    monkeypatch.setenv("CC", fake_compiler(tmp_path, script))
    with pytest.raises(kernels.KernelUnavailable, match="disk full"):
        kernels.load("scan")
    assert list(private_cache.iterdir()) == []


def _build_and_scan(cache: str, queue: "multiprocessing.Queue[object]") -> None:
    os.environ["HYMOEREC_CACHE"] = cache
    from hymoerec.models.scan_kernel import native_scan
    from tests.models.test_mamba import scan_inputs

    queue.put(native_scan(*scan_inputs(batch=2, length=9)).tolist())


def test_processes_that_build_at_once_all_get_a_working_library(private_cache: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_build_and_scan, args=(str(private_cache.parent), queue))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    expected = SelectiveScan.apply(*scan_inputs(batch=2, length=9))
    for result in results:
        torch.testing.assert_close(torch.tensor(result), expected, atol=1e-5, rtol=1e-5)
    assert [p.name for p in private_cache.iterdir()] == [kernels.library_path("scan").name]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_the_kernel_runs_on_torchs_own_openmp_runtime() -> None:
    scan_kernel.library()
    maps = Path("/proc/self/maps").read_text().splitlines()
    runtimes = {line.split()[-1] for line in maps if "libgomp" in line}
    assert len(runtimes) <= 1, runtimes


def _ffn_either_way() -> tuple[torch.Tensor, torch.Tensor]:
    from hymoerec.models.ffn_kernel import gelu_dropout
    from hymoerec.models.layers import Dropout

    x, dropout = torch.randn(64), Dropout(0.5)
    torch.manual_seed(0)
    out = gelu_dropout(x, 0.5, True, dropout)
    torch.manual_seed(0)
    return out, dropout(torch.nn.functional.gelu(x))


def _conv_either_way() -> tuple[torch.Tensor, torch.Tensor]:
    from hymoerec.models.conv_kernel import conv_silu

    conv, x = torch.nn.Conv1d(4, 4, 4, groups=4, padding=3), torch.randn(2, 7, 4)
    expected = torch.nn.functional.silu(conv(x.transpose(1, 2))[..., :7]).transpose(1, 2)
    return conv_silu(x, conv), expected


def _softmax_either_way() -> tuple[torch.Tensor, torch.Tensor]:
    from hymoerec.training.loss import chunked_softmax_ce, full_softmax_ce

    hidden, weights, targets = torch.randn(5, 4), torch.randn(9, 4), torch.tensor([1, 8, 3, 3, 2])
    return chunked_softmax_ce(hidden, weights, targets), full_softmax_ce(hidden, weights, targets)


@pytest.mark.parametrize(
    ("module", "run", "message"),
    [
        ("models.ffn_kernel", _ffn_either_way, "FFN kernel unavailable"),
        ("models.conv_kernel", _conv_either_way, "convolution kernel unavailable"),
        ("training.softmax_kernel", _softmax_either_way, "softmax kernel unavailable"),
    ],
)
def test_no_compiler_leaves_the_layer_unfused_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, module: str, run: Any, message: str
) -> None:
    import importlib

    kernel = importlib.import_module(f"hymoerec.{module}")
    kernel.library.cache_clear()
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setitem(kernel._state, "failed", False)
    with kernels.use(True), pytest.warns(RuntimeWarning, match=message):
        out, expected = run()
    torch.testing.assert_close(out, expected)
    assert kernel._state["failed"]
    kernel.library.cache_clear()


def test_a_killed_builds_temporary_is_removed_by_the_next_build(private_cache: Path) -> None:
    target = kernels.library_path("scan")
    target.parent.mkdir(parents=True)
    stale = target.parent / f".{target.stem}.tmp-killed"
    fresh = target.parent / f".{target.stem}.tmp-running"
    for path in (stale, fresh):
        path.write_bytes(b"half a library")
    old = stale.stat().st_mtime - kernels.STALE_SECONDS - 60
    os.utime(stale, (old, old))
    kernels.load("scan")
    assert not stale.exists()
    assert fresh.exists()  # it may be another process's build in progress


def test_a_build_killed_midway_leaves_no_library_and_the_next_one_succeeds(
    tmp_path: Path, private_cache: Path
) -> None:
    import signal
    import subprocess
    import time

    script = (
        'case "$*" in *--version*) echo slow 1.0; exit 0;; esac\n'
        'out=""; take=0\n'
        'for a in "$@"; do if [ $take = 1 ]; then out=$a; fi; take=0; '
        'if [ "$a" = "-o" ]; then take=1; fi; done\n'
        'echo half > "$out"; sleep 60\n'
    )
    slow = fake_compiler(tmp_path, script)
    env = {**os.environ, "CC": slow, "HYMOEREC_CACHE": str(private_cache.parent)}
    code = "from hymoerec import kernels; kernels.load('scan')"
    build = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not list(private_cache.glob(".scan-*.tmp-*")) and time.time() < deadline:
            time.sleep(0.1)
        assert list(private_cache.glob(".scan-*.tmp-*")), "the build never started"
    finally:
        os.killpg(build.pid, signal.SIGKILL)  # the process and its compiler
        build.wait()
    assert not list(private_cache.glob("scan-*.so"))  # nothing under a final name
    assert hasattr(kernels.load("scan"), "mixer_forward")  # the real compiler, from scratch
