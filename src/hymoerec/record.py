"""The run record: the small JSON summary of one finished run that goes into git
(``results/*.json``), and the pieces it is made of: per-user test ranks packed into one
character each, the validation curve, the machine and the code version."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hymoerec import runtime
from hymoerec.artifacts import write_text_atomic

RECORD_FORMAT = 1
# test_rank_top10: one character per user (internal id order): the user's test rank 1-10
# as a-j, or "." for a rank below the top 10; per-user HR@10 and NDCG@10 follow exactly.
RANK_CODE = "abcdefghij"
OUTSIDE = "."
EXCLUDED = ("valid_history_excluded", "test_history_excluded")


def encode_ranks(ranks: np.ndarray) -> str:
    return "".join(RANK_CODE[r - 1] if r <= len(RANK_CODE) else OUTSIDE for r in ranks.tolist())


def decode_ranks(code: str) -> np.ndarray:
    """Ranks 1-10, and 0 for a rank below the top 10."""
    lookup = {c: i + 1 for i, c in enumerate(RANK_CODE)} | {OUTSIDE: 0}
    return np.array([lookup[c] for c in code], dtype=np.int64)


def curves(directory: Path) -> dict[str, list[float]]:
    """Per epoch: validation NDCG@10, wall seconds since training began (validation and
    earlier attempts of a resumed run included) and, when the run logged it, validation
    NDCG@10 with the history excluded; enough for time to quality once the run is gone."""
    lines = (directory / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in lines]
    result = {
        "valid_ndcg10_by_epoch": [round(e["valid"]["NDCG@10"], 5) for e in epochs],
        "elapsed_by_epoch": [round(e["elapsed"], 1) for e in epochs],
    }
    if epochs and all(e.get(EXCLUDED[0]) for e in epochs):
        excluded = [round(e[EXCLUDED[0]]["NDCG@10"], 5) for e in epochs]
        result[f"{EXCLUDED[0]}_ndcg10_by_epoch"] = excluded
    return result


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Written atomically (``artifacts.write_text_atomic``): a record is complete or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(value, indent=1) + "\n")


def machine(device: str) -> dict[str, Any]:
    import torch

    resolved = runtime.resolve_device(device)
    name = torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else "cpu"
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": name,
        # what train.bf16 = null (auto) decides on this machine; config.train.bf16 is
        # what the run used
        "bf16_native": runtime.native_bf16(resolved),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_version() -> dict[str, Any]:
    """The git commit of the package's checkout, and whether tracked files differed from it
    (uncommitted edits make the commit only an approximate code version)."""
    here = Path(__file__).resolve().parent
    try:
        commit = _git(here, "rev-parse", "HEAD")
        dirty = bool(_git(here, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(where: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()
