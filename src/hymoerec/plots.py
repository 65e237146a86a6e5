"""Training curves of a run directory as a PNG: loss, validation NDCG@10 and, for
mixture-of-experts models, the fusion weight alpha of each layer."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hymoerec.data.errors import DataError


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir} is not a run directory (no metrics.jsonl)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}: not JSON ({error.msg})") from error
    if not rows:
        raise DataError(f"{path}: no epochs recorded yet")
    return rows


def plot_training(run_dir: Path, out: Path | None = None) -> Path:
    """Write the curves to ``out`` (default ``RUN_DIR/training.png``) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    epochs = [row["epoch"] for row in rows]
    alphas = [row.get("alpha") or [] for row in rows]
    panels = 3 if any(alphas) else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True)
    axes[0].plot(epochs, [row["loss"] for row in rows], marker=".")
    axes[0].set(title="training loss (CE)", xlabel="epoch")
    axes[1].plot(epochs, [row["valid"]["NDCG@10"] for row in rows], marker=".", color="C1")
    axes[1].set(title="validation NDCG@10", xlabel="epoch")
    if panels == 3:
        for layer in range(len(alphas[-1])):
            axes[2].plot(epochs, [a[layer] for a in alphas], marker=".", label=f"layer {layer}")
        axes[2].set(title="fusion weight alpha", xlabel="epoch", ylim=(0, 1))
        axes[2].legend()
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.suptitle(run_dir.name)
    return save_png(figure, out or run_dir / "training.png")


def save_png(figure: Any, path: Path, dpi: int = 120) -> Path:
    """Save and close ``figure`` in the format its suffix names (PNG, SVG, PDF ...);
    written beside ``path`` and renamed into place, so a failure leaves no half-written
    file. A suffix matplotlib cannot write is an error naming the ones it can."""
    import matplotlib.pyplot as plt

    kind = path.suffix.lower().lstrip(".")
    supported = figure.canvas.get_supported_filetypes()
    if kind not in supported:
        plt.close(figure)
        raise DataError(
            f"{path}: cannot write {kind or 'a file without a suffix'}; use "
            f"one of .{', .'.join(sorted(supported))}"
        )
    handle, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(tmp, dpi=dpi, format=kind)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
