"""Finished runs read back: their config, best weights and data (each checked against
the run's checksums), and their validation and test figures computed again, with other
options if asked (history excluded, another history length, another seen-item penalty).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hymoerec.artifacts import ArtifactError
from hymoerec.config import ConfigError, RunConfig, prepare_dataset, relocated
from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.metrics import DEFAULT_METRICS
from hymoerec.models import build_model
from hymoerec.models.base import SequentialModel
from hymoerec.rundir import check_run_dir, load_weights, read_config, read_dataset
from hymoerec.training.loop import resolve_device
from hymoerec.training.validation import validate


def run_penalty(run_dir: Path) -> float:
    """The seen-item penalty a finished run was trained with; 0 where it has none."""
    final = run_dir / "final.json"
    if not final.is_file():
        return 0.0
    try:
        fitted = json.loads(final.read_text()).get("seen_penalty")
        return float(fitted["penalty"]) if fitted else 0.0
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ArtifactError(f"{final}: no readable seen_penalty ({error})") from None


def load_run(
    run_dir: Path, data_dir: str | None = None
) -> tuple[RunConfig, SequentialModel, SequenceData]:
    """A finished run's config, model (best weights) and prepared data, each checked
    against the run's checksums. The data is the run's own copy (``dataset/``); a run
    written before runs kept one is prepared again from its dataset, found in
    ``data_dir`` (else $HYMOEREC_DATA, else where it was)."""
    check_run_dir(run_dir)
    config = read_config(run_dir)
    data = read_dataset(run_dir)
    if data is None:
        _, data = prepare_dataset(config.dataset, relocated(config.data, data_dir))
    try:
        model = build_model(config.model, config.model_options, data.num_items)
    except (ConfigError, TypeError, ValueError) as error:
        raise ArtifactError(f"{run_dir / 'config.yaml'}: {error}") from None
    load_weights(model, run_dir)
    return config, model, data


def evaluate_run(
    run_dir: Path,
    exclude_history: bool = False,
    metrics: Sequence[str] = DEFAULT_METRICS,
    max_len: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    data_dir: str | None = None,
    seen_penalty: float | None = None,
) -> dict[str, dict[str, float]]:
    """Re-score a finished run on validation and test; with ``exclude_history`` the items
    of each user's history are taken out of the ranking (the paper's protocol keeps them).
    ``max_len``, ``batch_size`` and ``device`` default to the run's own; ``seen_penalty``
    overrides the penalty the run learned (``train.seen_penalty``)."""
    config, model, data = load_run(run_dir, data_dir)
    train_config = config.train
    if batch_size is not None:
        train_config = replace(train_config, eval_batch_size=batch_size)
    if device is not None:
        train_config = replace(train_config, device=device)
    resolved = resolve_device(train_config.device)
    model.to(resolved)
    length = max_len or config.train.max_len
    penalty = run_penalty(run_dir) if seen_penalty is None else seen_penalty
    begin = time.perf_counter()
    report = {
        split: validate(
            model,
            data,
            split,
            length,
            train_config,
            resolved,
            exclude_history=exclude_history,
            seen_penalty=penalty,
        ).summary(metrics)
        for split in ("valid", "test")
    }
    report["seconds"] = {"total": time.perf_counter() - begin}
    return report
