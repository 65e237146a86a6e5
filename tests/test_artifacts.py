"""Damaged, unwritable and interrupted run artifacts through the command line: one line
naming the file and the problem, a non-zero exit, no traceback, nothing half-written.

A tiny HyMoERec trained on a small synthetic sequences file (seconds on one core) is
copied and damaged per case: its weights, config, item metadata, stored dataset, the
cache entry `evaluate` reads, and the checkpoint `--resume` reads.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hymoerec import artifacts
from hymoerec.cli import main
from hymoerec.config import load_run_config
from hymoerec.training import checkpoint as checkpoints
from hymoerec.training import run as runs
from hymoerec.training.checkpoint import CHECKPOINT, load_checkpoint
from hymoerec.training.run import TrainingInterrupted, partial_dir, train

TINY = [
    "model_options.hidden_size=8",
    "model_options.moe.router_hidden=4",
    "train.max_len=10",
    "train.batch_size=16",
    "train.threads=1",
    "train.warmup_steps=1",
]


def synthetic(folder: Path) -> Path:
    """60 users with 12 items each out of 40: trains in well under a second per epoch."""
    rng = np.random.default_rng(0)
    lines = [f"u{u} " + " ".join(f"i{i}" for i in rng.integers(0, 40, 12)) for u in range(60)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "synthetic.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def settings(root: Path, epochs: int) -> list[str]:
    return [*TINY, f"train.epochs={epochs}", f"data.cache_dir={root / 'cache'}"]


def config_for(root: Path, epochs: int = 2):  # type: ignore[no-untyped-def]
    dataset = str(synthetic(root / "data"))
    return load_run_config(None, settings(root, epochs), {"model": "hymoerec", "dataset": dataset})


def train_args(root: Path, out: Path, epochs: int = 2) -> list[str]:
    args = ["train", "--model", "hymoerec", "--dataset", str(synthetic(root / "data"))]
    args += ["--out", str(out), "--quiet"]
    for setting in settings(root, epochs):
        args += ["--set", setting]
    return args


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("artifacts")
    train(config_for(root), root / "run", progress=False)
    return root / "run"


def one_line_error(capsys: pytest.CaptureFixture[str], names: Path | str, problem: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hymoerec: error: {names}"), lines[0]
    assert problem in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------- damaged runs


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) - 5] ^= 0x10
    path.write_bytes(bytes(content))


def retensor(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))

    return damage


def first(tensors: dict[str, Any]) -> str:
    return sorted(tensors)[0]


WEIGHT_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (truncate, "not a readable safetensors file"),
    "empty": (lambda p: p.write_bytes(b""), "not a readable safetensors file"),
    "random": (
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
        "not a readable safetensors file",
    ),
    "huge header": (
        lambda p: p.write_bytes((2**62).to_bytes(8, "little") + b"{}"),
        "not a readable safetensors file",
    ),
    "wrong shape": (
        retensor(lambda t: t.__setitem__(first(t), torch.zeros(3, 3))),
        "the model expects",
    ),
    "missing tensor": (retensor(lambda t: t.pop(first(t))), "missing tensor"),
    "extra tensor": (retensor(lambda t: t.__setitem__("extra", torch.zeros(1))), "unexpected"),
}


def command(kind: str, run: Path) -> list[str]:
    if kind == "evaluate":
        return ["evaluate", str(run), "--json"]
    return ["recommend", str(run), "--user", "u1", "--json"]


@pytest.mark.parametrize("kind", ["evaluate", "recommend"])
@pytest.mark.parametrize("damage", sorted(WEIGHT_DAMAGE))
@pytest.mark.parametrize("checksums", [True, False], ids=["checksums", "no-checksums"])
def test_damaged_weights(
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    damage: str,
    checksums: bool,
) -> None:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    if not checksums:  # a run written before checksums.json: the structure is still checked
        (run / "checksums.json").unlink()
    spoil, problem = WEIGHT_DAMAGE[damage]
    spoil(run / "model.safetensors")
    assert main(command(kind, run)) == 2
    expected = "checksum mismatch" if checksums else problem
    one_line_error(capsys, run / "model.safetensors", expected)


@pytest.mark.parametrize("kind", ["evaluate", "recommend"])
def test_flipped_byte_in_the_weights_is_caught(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    flip_byte(run / "model.safetensors")  # inside a tensor: still a valid file
    assert main(command(kind, run)) == 2
    one_line_error(capsys, run / "model.safetensors", "checksum mismatch")


CONFIG_DAMAGE = {
    "not YAML": ("model: [\n  :\t", "not a readable YAML file"),
    "a list": ("- 1\n- 2\n", "expected a mapping"),
    "unknown option": (None, "unknown option"),
    "empty": ("", "expected a mapping"),
}


@pytest.mark.parametrize("kind", ["evaluate", "recommend"])
@pytest.mark.parametrize("damage", sorted(CONFIG_DAMAGE))
def test_damaged_config(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, damage: str
) -> None:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    text, problem = CONFIG_DAMAGE[damage]
    if text is None:
        text = (run / "config.yaml").read_text() + "colour: blue\n"
    (run / "config.yaml").write_text(text)
    assert main(command(kind, run)) == 2
    one_line_error(capsys, run / "config.yaml", "checksum mismatch")
    (run / "checksums.json").unlink()  # the same file in a run without checksums
    assert main(command(kind, run)) == 2
    one_line_error(capsys, run / "config.yaml", problem)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(truncate, "not a readable array"), (lambda p: p.write_bytes(b""), "not a readable array")],
    ids=["truncated", "empty"],
)
def test_damaged_run_dataset(
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    problem: str,
) -> None:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    damage(run / "dataset" / "items.npy")
    assert main(command("recommend", run)) == 2
    one_line_error(capsys, run / "dataset" / "items.npy", "checksum mismatch")
    meta = json.loads((run / "dataset" / "meta.json").read_text())
    del meta["sha256"]  # as written before checksums were recorded
    (run / "dataset" / "meta.json").write_text(json.dumps(meta))
    assert main(command("recommend", run)) == 2
    one_line_error(capsys, run / "dataset" / "items.npy", problem)


def test_damaged_items_json(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    (run / "items.json").write_text('{"i1": ')
    (run / "checksums.json").unlink()
    assert main(command("recommend", run)) == 2
    one_line_error(capsys, run / "items.json", "unreadable")


def test_damaged_cache_entry_through_data_stats(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run evaluates from its own copy of the data; the shared cache entry it was
    prepared into is what `data stats` (and the next run) read, and it is checked."""
    root = tmp_path / "root"
    shutil.copytree(trained.parent, root)
    (entry,) = [p for p in (root / "cache").iterdir() if not p.name.startswith(".")]
    truncate(entry / "items.npy")
    dataset = str(root / "data" / "synthetic.txt")
    assert main(["data", "stats", dataset, "--cache-dir", str(root / "cache")]) == 2
    line = one_line_error(capsys, entry / "items.npy", "checksum mismatch")
    assert f"delete {entry} to prepare it again" in line
    assert main(command("evaluate", root / "run")) == 0  # the run has its own copy


def test_evaluate_json_has_the_reference_models_shape(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(trained), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"model", "dataset", "run", "protocol", "metrics", "seconds"}
    assert set(report["metrics"]) == {"valid", "test"}
    final = json.loads((trained / "final.json").read_text())
    assert report["metrics"]["test"] == pytest.approx(final["test"])


# ------------------------------------------------------------ checkpoints and resume


def interrupted_run(root: Path, monkeypatch: pytest.MonkeyPatch, epochs: int = 2) -> Path:
    """A run stopped after its last checkpoint, just before its weights are written."""

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    out = root / "resumable"
    with monkeypatch.context() as patch:
        patch.setattr(runs, "save_weights", stop)
        with pytest.raises(TrainingInterrupted) as info:
            train(config_for(root, epochs), out, progress=False)
    assert info.value.kept == partial_dir(out)
    return out


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (truncate, "not a complete checkpoint"),
        (lambda p: p.write_bytes(b""), "not a complete checkpoint"),
        (lambda p: p.write_bytes(np.random.default_rng(1).bytes(4096)), "not a complete"),
        (flip_byte, "checksum mismatch"),
    ],
    ids=["truncated", "empty", "random", "flipped byte"],
)
def test_resume_from_a_damaged_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    problem: str,
) -> None:
    torch.set_num_threads(1)
    out = interrupted_run(tmp_path, monkeypatch)
    target = partial_dir(out) / CHECKPOINT
    damage(target)
    assert main([*train_args(tmp_path, out), "--resume"]) == 2
    one_line_error(capsys, target, problem)
    assert partial_dir(out).is_dir() and not out.exists()  # left as it was, to inspect


def test_resume_with_a_config_that_is_not_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    out = interrupted_run(tmp_path, monkeypatch)
    (partial_dir(out) / "config.yaml").write_text("model: [\n  :\t")
    assert main([*train_args(tmp_path, out), "--resume"]) == 2
    one_line_error(capsys, partial_dir(out) / "config.yaml", "not a readable YAML file")


def full_disk_on(name: str, after: int = 0) -> Callable[..., None]:
    """A write_atomic whose write to a file called ``name`` fails with ENOSPC halfway,
    after ``after`` successful writes to that name."""
    real = artifacts.write_atomic
    seen = {"count": 0}

    def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
        if path.name != name:
            return real(path, write)
        seen["count"] += 1
        if seen["count"] <= after:
            return real(path, write)

        def half_then_full(handle: IO[bytes]) -> None:
            handle.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

        return real(path, half_then_full)

    return write_atomic


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "write_atomic", full_disk_on(CHECKPOINT, after=1))
        assert main(train_args(tmp_path, out, epochs=3)) == 2
    target = partial_dir(out) / CHECKPOINT
    one_line_error(capsys, target, "cannot write: No space left on device")
    assert sorted(p.name for p in partial_dir(out).iterdir() if p.name.startswith(".")) == []
    assert load_checkpoint(target)["epoch"] == 1  # the previous checkpoint, intact
    assert main([*train_args(tmp_path, out, epochs=3), "--resume"]) == 0
    assert not partial_dir(out).exists()
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3]


def test_disk_full_at_the_weights_names_them_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    from hymoerec import rundir

    with monkeypatch.context() as patch:
        patch.setattr(rundir, "write_atomic", full_disk_on("model.safetensors"))
        assert main(train_args(tmp_path, out)) == 2
    weights = partial_dir(out) / "model.safetensors"
    one_line_error(capsys, weights, "cannot write: No space left on device")
    left = sorted(p.name for p in partial_dir(out).iterdir())
    assert "model.safetensors" not in left and ".model.safetensors.tmp" not in left
    assert main([*train_args(tmp_path, out), "--resume"]) == 0
    assert (out / "model.safetensors").is_file() and not partial_dir(out).exists()


def test_stray_temporary_checkpoint_is_removed_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    out = interrupted_run(tmp_path, monkeypatch)
    stray = partial_dir(out) / f".{CHECKPOINT}.tmp"
    stray.write_bytes(b"x" * 1000)  # left by a kill during a checkpoint write
    train(config_for(tmp_path), out, progress=False, resume=True)
    assert not partial_dir(out).exists() and (out / "final.json").is_file()


# ------------------------------------------------------------------------ Ctrl-C


def test_interrupt_before_the_first_checkpoint_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "fit", interrupt)
    out = tmp_path / "run"
    assert main(train_args(tmp_path, out)) == 130
    err = capsys.readouterr().err
    nothing = "nothing unfinished was kept (a run or cache entry in progress is removed)"
    assert err == f"hymoerec: interrupted; {nothing}\n"
    assert not out.exists() and not partial_dir(out).exists()


def interruptible() -> None:
    """In the child: Ctrl-C back to its default, which a shell running the tests in the
    background sets to ignored (and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_after_a_checkpoint_prints_one_line_and_resumes(tmp_path: Path) -> None:
    synthetic(tmp_path / "data")
    out = tmp_path / "run"
    args = train_args(tmp_path, out, epochs=200)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "hymoerec", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    checkpoint = partial_dir(out) / CHECKPOINT
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "the child never finished an epoch"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"hymoerec: interrupted; kept {partial_dir(out)}/ (its last end-of-epoch checkpoint); "
        "to continue, run the same command with --resume"
    )
    others = err.strip().splitlines()[:-1]  # the epoch log lines, nothing else
    assert all(line.startswith("epoch ") for line in others), others
    assert not out.exists() and checkpoint.is_file()
    assert not list(partial_dir(out).glob(".*.tmp"))
    assert main([*args, "--resume"]) == 0  # what the line says to do
    assert (out / "final.json").is_file() and not partial_dir(out).exists()
