"""Do the experts do what the paper says? Routing of a trained mixture-of-experts run,
recomputed on the test histories, as CSV tables and PNG figures.

The paper's reading is that routed experts specialise (popular vs. long-tail items, short
vs. long histories) while the shared expert carries the common signal. The tables here
let that be checked: the routing share of each expert (its mean top-K gate at the
position that predicts the test item) by target-item popularity decile and by history
length, the fusion weight alpha and the balance term over training, and the entropy of
expert usage per layer. Routing shares are compared with those of random user groups of
the same sizes, so a difference between groups can be told from sampling noise.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hymoerec.config import RunConfig
from hymoerec.data.batches import right_padded
from hymoerec.data.errors import DataError
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData
from hymoerec.models import build_model
from hymoerec.models.base import SequentialModel
from hymoerec.plots import read_metrics, save_png
from hymoerec.rundir import check_run_dir, load_weights, read_config, read_dataset
from hymoerec.training.loss import train_item_counts
from hymoerec.training.run import load_data
from hymoerec.training.schedule import fusion_scale

LENGTH_EDGES = (0, 10, 20, 50, 100, 200)  # history-length buckets [a, b), the last open
DECILES = 10
NULL_SHUFFLES = 20  # random groupings averaged for the chance-level spread


@dataclass(frozen=True)
class Routing:
    """Routing of every test user, per MoE layer."""

    last: list[np.ndarray]  # per layer (U, E): top-K gates at the last history position
    usage: list[np.ndarray]  # per layer (E,): mean gate over every real history position
    token_entropy: list[float]  # per layer: mean entropy (nats) of the full router softmax


def load_trained(run_dir: Path) -> tuple[RunConfig, SequentialModel, SequenceData]:
    check_run_dir(run_dir)
    config = read_config(run_dir)
    data = read_dataset(run_dir)
    if data is None:
        data = load_data(config)[1]
    model = build_model(config.model, config.model_options, data.num_items)
    load_weights(model, run_dir)
    return config, model.eval(), data


@torch.no_grad()
def test_routing(
    model: SequentialModel, data: SequenceData, max_len: int, scale: float, batch: int = 256
) -> Routing:
    part = data.split("test")
    last: list[list[np.ndarray]] = []
    usage: list[torch.Tensor] = []
    entropy: list[float] = []
    tokens = 0
    for start in range(0, data.num_users, batch):
        users = np.arange(start, min(start + batch, data.num_users))
        items, lengths = right_padded(part.items, part.starts[users], part.ends[users], max_len)
        history = torch.from_numpy(items)  # (B, L)
        output = model(history, alpha_scale=scale)
        if not output.router:
            raise DataError("this run has no mixture-of-experts layer to analyse")
        real = history != PAD  # (B, L)
        rows = torch.arange(len(users))
        position = torch.from_numpy(lengths - 1)
        tokens += int(real.sum())
        for layer, stats in enumerate(output.router):
            if layer == len(last):
                last.append([])
                usage.append(torch.zeros(stats.gates.size(-1), dtype=torch.float64))
                entropy.append(0.0)
            last[layer].append(stats.gates[rows, position].double().numpy())  # (B, E)
            usage[layer] += stats.gates[real].double().sum(0)  # (E,)
            probs = stats.probs[real].double()  # (T, E)
            entropy[layer] += float(-torch.special.xlogy(probs, probs).sum())
    return Routing(
        last=[np.concatenate(parts) for parts in last],
        usage=[(u / tokens).numpy() for u in usage],
        token_entropy=[e / tokens for e in entropy],
    )


def popularity_deciles(data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
    """(decile 0-9 of each test user, training count of each user's test target). Users
    are ranked by their target's popularity and cut into ten groups of equal size, so
    each decile holds a tenth of the test users (not of the items)."""
    popularity = train_item_counts(data)[data.split("test").targets]  # (U,)
    order = np.argsort(popularity, kind="stable")
    decile = np.empty(len(order), dtype=np.int64)
    decile[order] = np.arange(len(order)) * DECILES // len(order)
    return decile, popularity


def length_buckets(data: SequenceData) -> tuple[np.ndarray, list[str]]:
    part = data.split("test")
    lengths = part.ends - part.starts  # (U,) full history length
    bucket = np.searchsorted(np.array(LENGTH_EDGES[1:]), lengths, side="right")
    labels = [f"{a}-{b - 1}" for a, b in itertools.pairwise(LENGTH_EDGES)]
    return bucket, [*labels, f"{LENGTH_EDGES[-1]}+"]


def group_shares(gates: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """(count, E) mean gates per group; each row sums to 1 (top-K gates do per user)."""
    sums = np.zeros((count, gates.shape[1]))
    np.add.at(sums, groups, gates)
    sizes = np.bincount(groups, minlength=count)
    return sums / np.maximum(sizes, 1)[:, None]


def spread(shares: np.ndarray, sizes: np.ndarray) -> float:
    """Largest difference of one expert's share between two non-empty groups."""
    present = shares[sizes > 0]
    return float((present.max(0) - present.min(0)).max())


def chance_spread(gates: np.ndarray, groups: np.ndarray, count: int, seed: int = 0) -> float:
    """The spread of random groups with the same sizes: what sampling noise alone gives."""
    rng = np.random.default_rng(seed)
    sizes = np.bincount(groups, minlength=count)
    values = [
        spread(group_shares(gates, rng.permutation(groups), count), sizes)
        for _ in range(NULL_SHUFFLES)
    ]
    return float(np.mean(values))


def analyze_run(run_dir: Path, out: Path | None = None) -> list[Path]:
    """Write the routing tables and figures of ``run_dir`` into ``out`` (default
    ``RUN_DIR/analysis``); returns the files written."""
    config, model, data = load_trained(run_dir)
    records = read_metrics(run_dir)
    out = out or run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    scale = fusion_scale(model, records[-1]["step"])  # the warm-up where training ended
    routing = test_routing(model, data, config.train.max_len or 200, scale)
    experts = routing.last[0].shape[1]
    decile, popularity = popularity_deciles(data)
    bucket, labels = length_buckets(data)
    written: list[Path] = []
    summary: dict[str, Any] = {"run": str(run_dir), "model": config.model, "layers": []}

    pop_rows, len_rows = [], []
    for layer, gates in enumerate(routing.last):
        shares = group_shares(gates, decile, DECILES)
        sizes = np.bincount(decile, minlength=DECILES)
        for d in range(DECILES):
            inside = popularity[decile == d]
            pop_rows.append([layer, d + 1, int(sizes[d]), int(inside.min()), int(inside.max())])
            pop_rows[-1] += shares[d].tolist()
        by_length = group_shares(gates, bucket, len(labels))
        length_sizes = np.bincount(bucket, minlength=len(labels))
        for b, label in enumerate(labels):
            if length_sizes[b]:
                len_rows.append([layer, label, int(length_sizes[b]), *by_length[b].tolist()])
        usage = routing.usage[layer]
        summary["layers"].append(
            {
                "popularity_spread": spread(shares, sizes),
                "popularity_chance_spread": chance_spread(gates, decile, DECILES),
                "popularity_shares_first_last": [shares[0].tolist(), shares[-1].tolist()],
                "length_spread": spread(by_length, length_sizes),
                "length_chance_spread": chance_spread(gates, bucket, len(labels)),
                "usage": usage.tolist(),
                "usage_entropy": float(-(usage * np.log(np.where(usage > 0, usage, 1))).sum()),
                "max_entropy": math.log(experts),
                "token_entropy": routing.token_entropy[layer],
            }
        )
    share_columns = [f"expert_{e}" for e in range(experts)]
    pop_header = ["layer", "decile", "users", "min_count", "max_count", *share_columns]
    written.append(_csv(out / "share_by_popularity.csv", pop_header, pop_rows))
    len_header = ["layer", "history_length", "users", *share_columns]
    written.append(_csv(out / "share_by_history_length.csv", len_header, len_rows))
    entropy_rows = [
        [layer, s["usage_entropy"], s["token_entropy"], s["max_entropy"]]
        for layer, s in enumerate(summary["layers"])
    ]
    entropy_header = ["layer", "usage_entropy", "mean_token_entropy", "max_entropy"]
    written.append(_csv(out / "entropy.csv", entropy_header, entropy_rows))
    weight = _balance_weight(config)
    layers = len(routing.last)
    train_rows = []
    for r in records:
        balance = r["aux_loss"] / weight if weight else ""
        alphas = (r.get("alpha") or [])[:layers]
        train_rows.append([r["epoch"], r["step"], r["aux_loss"], balance, *alphas])
    alpha_columns = [f"alpha_layer{i}" for i in range(len(records[-1].get("alpha") or []))]
    train_header = ["epoch", "step", "aux_loss", "balance_term", *alpha_columns[:layers]]
    written.append(_csv(out / "training.csv", train_header, train_rows))
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    written.append(summary_path)
    written += _figures(out, pop_rows, len_rows, entropy_rows, train_rows, experts, layers)
    return written


def _balance_weight(config: RunConfig) -> float:
    moe = config.model_options.get("moe") or {}
    return float(moe.get("balance_weight", 0.0))


def _csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _figures(
    out: Path,
    pop_rows: list[list[Any]],
    len_rows: list[list[Any]],
    entropy_rows: list[list[Any]],
    train_rows: list[list[Any]],
    experts: int,
    layers: int,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, rows, label_index, start, xlabel in (
        ("share_by_popularity", pop_rows, 1, 5, "target popularity decile (1 = least popular)"),
        ("share_by_history_length", len_rows, 1, 3, "history length"),
    ):
        figure, axes = plt.subplots(
            1, layers, figsize=(5.5 * layers, 3.6), squeeze=False, constrained_layout=True
        )
        for layer in range(layers):
            mine = [r for r in rows if r[0] == layer]
            labels = [str(r[label_index]) for r in mine]
            positions = np.arange(len(mine))  # labels like "1" are names, not numbers
            bottom = np.zeros(len(mine))
            axis = axes[0][layer]
            for e in range(experts):
                share = np.array([r[start + e] for r in mine])
                axis.bar(positions, share, bottom=bottom, label=f"expert {e}")
                bottom += share
            axis.set_xticks(positions, labels)
            axis.set(title=f"routing share, layer {layer}", xlabel=xlabel, ylim=(0, 1))
        axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        paths.append(save_png(figure, out / f"{name}.png", dpi=110))

    figure, axes = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True)
    epochs = [r[0] for r in train_rows]
    for layer in range(layers):
        alphas = [r[4 + layer] if len(r) > 4 + layer else np.nan for r in train_rows]
        axes[0].plot(epochs, alphas, marker=".", label=f"layer {layer}")
    axes[0].set(title="fusion weight alpha", xlabel="epoch", ylim=(0, 1))
    axes[0].legend(fontsize="small")
    axes[1].plot(epochs, [r[2] for r in train_rows], marker=".", color="C3")
    axes[1].set(title="balance loss term (weighted, per batch)", xlabel="epoch")
    index = np.arange(len(entropy_rows))
    axes[2].bar(index - 0.2, [r[1] for r in entropy_rows], 0.4, label="expert usage")
    axes[2].bar(index + 0.2, [r[2] for r in entropy_rows], 0.4, label="per token (mean)")
    axes[2].axhline(math.log(experts), color="k", linestyle="--", label=f"log {experts}")
    axes[2].set(title="routing entropy (nats)", xlabel="layer", xticks=index)
    axes[2].legend(fontsize="small")
    for axis in axes:
        axis.grid(alpha=0.3)
    paths.append(save_png(figure, out / "training_and_entropy.png", dpi=110))
    return paths


def describe(directory: Path) -> list[str]:
    """A plain reading of an analysis directory, computed from its numbers: how far the
    routing shares move between groups, measured against random groups of the same sizes."""
    path = directory / "summary.json"
    if not path.is_file():
        return ["(no summary.json: rerun `hymoerec analyze`)"]
    summary = json.loads(path.read_text())
    lines = []
    for layer, s in enumerate(summary["layers"]):
        first, last = s["popularity_shares_first_last"]
        top = int(np.argmax(np.abs(np.array(last) - np.array(first))))
        lines.append(
            f"- Layer {layer}, popularity: expert shares differ by up to "
            f"{100 * s['popularity_spread']:.1f} points between target-popularity deciles, "
            f"against {100 * s['popularity_chance_spread']:.1f} for random groups of the same "
            f"sizes ({_verdict(s['popularity_spread'], s['popularity_chance_spread'])}); "
            f"expert {top} moves most, {100 * first[top]:.1f}% in the least popular decile "
            f"to {100 * last[top]:.1f}% in the most popular. The router sees the history, "
            "not the target, so this is an association, not a decision about the target."
        )
        lines.append(
            f"- Layer {layer}, history length: up to {100 * s['length_spread']:.1f} points "
            f"between length buckets, against {100 * s['length_chance_spread']:.1f} by chance "
            f"({_verdict(s['length_spread'], s['length_chance_spread'])})."
        )
        lines.append(
            f"- Layer {layer}, usage: entropy {s['usage_entropy']:.3f} of at most "
            f"{s['max_entropy']:.3f} nats (shares "
            + ", ".join(f"{100 * u:.0f}%" for u in s["usage"])
            + f"); a single token's routing has {s['token_entropy']:.3f} nats on average."
        )
    lines += _describe_alpha(directory / "training.csv")
    return lines


def _describe_alpha(path: Path) -> list[str]:
    """Where the learned fusion weight alpha went: its peak and its last value."""
    if not path.is_file():
        return []
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    lines = []
    columns = [c for c in (rows[0] if rows else {}) if c.startswith("alpha_layer")]
    for column in columns:
        alpha = np.array([float(r[column]) for r in rows])
        peak = int(np.argmax(alpha))
        lines.append(
            f"- Layer {column.removeprefix('alpha_layer')}, fusion weight: alpha peaks at "
            f"{alpha[peak]:.3f} after epoch {rows[peak]['epoch']} and ends at {alpha[-1]:.3f} "
            f"after epoch {rows[-1]['epoch']}, so the routed experts add "
            f"{alpha[-1]:.3f} x their output to the dense branch."
        )
    return lines


def _verdict(observed: float, chance: float) -> str:
    if observed > 3 * chance:
        return "well beyond chance"
    if observed > 1.5 * chance:
        return "somewhat beyond chance"
    return "within what chance gives"
