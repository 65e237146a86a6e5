"""Run records (``results/*.json``, written by ``hymoerec reproduce``) read back and
summarised over seeds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hymoerec.data.errors import DataError
from hymoerec.record import RECORD_FORMAT

CAPPED = "†"  # at least one run of the cell stopped at its time budget


def load_record(path: Path) -> dict[str, Any]:
    """One run record, checked for its format."""
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error.msg})") from error
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise DataError(f"{path}: not a run record of format {RECORD_FORMAT}")
    return record


def load_records(directory: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` record of ``directory`` (none when it does not exist)."""
    if not directory.is_dir():
        return []
    return [load_record(path) for path in sorted(directory.glob("*.json"))]


@dataclass(frozen=True)
class Summary:
    """One metric over the seeds of one (dataset, model or ablation)."""

    mean: float
    std: float | None  # sample standard deviation (ddof=1); None for a single seed
    seeds: int
    capped: bool

    def cell(self) -> str:
        mark = CAPPED if self.capped else ""
        if self.std is None:
            return f"{self.mean:.4f}{mark}"
        return f"{self.mean:.4f} ± {self.std:.4f}{mark}"


def summarise(
    records: Sequence[dict[str, Any]], metric: str, split: str = "test"
) -> Summary | None:
    """``metric`` of ``split`` ("test", or "test_history_excluded") over the records."""
    if not records:
        return None
    values = np.array([r[split][metric] for r in records], dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return Summary(float(values.mean()), std, len(values), any(r["capped"] for r in records))
