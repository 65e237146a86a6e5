"""An interrupted run, resumed from its end-of-epoch checkpoint, ends exactly like an
uninterrupted one: same weights, same validation history, same test metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from hymoerec.config import ConfigError
from hymoerec.models import build_model
from hymoerec.training.checkpoint import CHECKPOINT, load_checkpoint
from hymoerec.training.loop import EpochRecord, fit, seed_everything
from hymoerec.training.run import (
    _defaults,
    _partial,
    history_length,
    load_data,
    model_options,
    partial_dir,
    train,
)
from hymoerec.training.validation import validate
from tests.training.test_run import TINY, tiny_config


class Interrupted(Exception):
    pass


def test_fit_resumed_after_epoch_one_equals_uninterrupted(
    shared_data: Path, tmp_path: Path, cache_root: Path
) -> None:
    config = tiny_config(shared_data, cache_root, "train.epochs=3")
    source, data = load_data(config)
    max_len = history_length(config, source)

    def fresh():  # type: ignore[no-untyped-def]
        seed_everything(config.train.seed)
        return build_model(config.model, model_options(config, max_len), data.num_items)

    full_model = fresh()
    full = fit(full_model, data, config.train, max_len, progress=False)

    def stop_in_epoch_two(record: EpochRecord, _: object) -> None:
        if record.epoch == 2:  # after epoch 1's checkpoint, before epoch 2's
            raise Interrupted

    checkpoint = tmp_path / CHECKPOINT
    with pytest.raises(Interrupted):
        fit(fresh(), data, config.train, max_len, stop_in_epoch_two, False, None, checkpoint)
    assert load_checkpoint(checkpoint)["epoch"] == 1

    seen: list[int] = []
    resumed_model = fresh()  # weights from a fresh start, overwritten by the checkpoint
    resumed = fit(
        resumed_model,
        data,
        config.train,
        max_len,
        lambda record, _: seen.append(record.epoch),
        False,
        None,
        checkpoint,
    )
    assert len(full.history) == 3
    assert seen == [2, 3]  # the callback sees only the epochs trained after resuming
    assert [r.valid for r in resumed.history] == [r.valid for r in full.history]
    assert [r.loss for r in resumed.history] == [r.loss for r in full.history]
    assert (resumed.best_epoch, resumed.best_valid) == (full.best_epoch, full.best_valid)
    assert resumed.stopped == full.stopped
    for name, tensor in full_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name
    device = torch.device("cpu")
    test_full = validate(full_model, data, "test", max_len, config.train, device)
    test_resumed = validate(resumed_model, data, "test", max_len, config.train, device)
    assert (test_full.ranks == test_resumed.ranks).all()


def test_run_killed_with_sigkill_resumes_to_the_same_metrics(
    shared_data: Path, tmp_path: Path, cache_root: Path
) -> None:
    extra = ["train.epochs=3"]
    config = tiny_config(shared_data, cache_root, *extra)
    reference = train(config, tmp_path / "reference", progress=False)

    run = tmp_path / "run"
    settings = [*TINY, *extra, f"data.data_dir={shared_data}", f"data.cache_dir={cache_root}"]
    command = [sys.executable, "-m", "hymoerec", "train", "--model", "hymoerec"]
    command += ["--dataset", "ml-100k", "--out", str(run), "--quiet", "--resume"]
    for setting in settings:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    checkpoint = partial_dir(run) / CHECKPOINT
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "the child never finished an epoch"
    os.kill(child.pid, signal.SIGKILL)  # in epoch 2: no handler, no clean-up runs
    child.wait()
    assert not run.exists() and partial_dir(run).is_dir()
    with pytest.raises(ConfigError, match="interrupted run"):
        train(config, run, progress=False)  # without resume it refuses to start over

    # as if started before train.window_stride existed: it resumes at the option's default
    saved = yaml.safe_load((partial_dir(run) / "config.yaml").read_text())
    del saved["train"]["window_stride"]
    (partial_dir(run) / "config.yaml").write_text(yaml.safe_dump(saved))
    resumed = train(config, run, progress=False, resume=True)
    assert resumed["valid"] == reference["valid"]
    assert resumed["test"] == reference["test"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert not partial_dir(run).exists() and not (run / CHECKPOINT).exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_resume_refuses_another_config(shared_data: Path, tmp_path: Path, cache_root: Path) -> None:
    config = tiny_config(shared_data, cache_root, "train.epochs=1")
    partial = partial_dir(tmp_path / "run")
    partial.mkdir()
    (partial / "config.yaml").write_text("model: sasrec\n")
    (partial / CHECKPOINT).write_bytes(b"")
    with pytest.raises(ConfigError, match="another config"):
        train(config, tmp_path / "run", progress=False, resume=True)
    assert (partial / CHECKPOINT).exists()  # an unrelated interrupted run is left alone


def test_an_interrupted_run_names_resume(tmp_path: Path) -> None:
    resolved = yaml.safe_load(
        yaml.safe_dump({"model": "sasrec", "dataset": "d", **_defaults("sasrec")})
    )
    partial = partial_dir(tmp_path / "run")
    partial.mkdir()
    (partial / CHECKPOINT).write_bytes(b"")
    with pytest.raises(ConfigError, match="the same command and --resume, or delete"):
        _partial(tmp_path / "run", resolved, resume=False)


def test_an_option_newer_than_the_run_resumes_only_at_its_default(tmp_path: Path) -> None:
    resolved = yaml.safe_load(
        yaml.safe_dump({"model": "sasrec", "dataset": "d", **_defaults("sasrec")})
    )
    partial = partial_dir(tmp_path / "run")
    partial.mkdir()
    (partial / CHECKPOINT).write_bytes(b"")
    older = {**resolved, "train": dict(resolved["train"])}
    del older["train"]["window_stride"]
    (partial / "config.yaml").write_text(yaml.safe_dump(older))
    assert _partial(tmp_path / "run", resolved, resume=True) == (partial, True)
    resolved["train"]["window_stride"] = 100  # the option now asks for other behaviour
    with pytest.raises(ConfigError, match="another config"):
        _partial(tmp_path / "run", resolved, resume=True)
