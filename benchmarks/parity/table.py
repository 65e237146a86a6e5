"""Render results/parity/*.json into the tables of docs/parity.md.

    python benchmarks/parity/table.py            # rewrite the generated block of docs/parity.md
    python benchmarks/parity/table.py --print    # print it instead

The block between the ``parity:begin`` and ``parity:end`` markers is replaced; the prose
around it is left alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "parity"
DOC = ROOT / "docs" / "parity.md"
BEGIN, END = "<!-- parity:begin -->", "<!-- parity:end -->"


def load(results: Path = RESULTS) -> list[dict[str, Any]]:
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    return sorted(
        records,
        key=lambda r: (r["dataset"], r["model"], r["epochs"], r["implementation"], r["seed"]),
    )


def label(record: dict[str, Any]) -> str:
    """'ours' or 'recbole': a record's tag names its epoch budget too (ours-e11)."""
    return str(record["implementation"]).split("-")[0]


def batch(record: dict[str, Any]) -> str:
    unit = record["train"].get("batch_unit", "windows")
    return f"{record['train']['batch_size']} {unit}"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def summary(records: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[str, str, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["model"], label(r), r["epochs"], batch(r))].append(r)
    lines = [
        "| dataset | model | implementation | epochs | batch | seeds | NDCG@10 kept "
        "| HR@10 kept | NDCG@10 excluded | HR@10 excluded | history in top 10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, model, implementation, epochs, size), group in groups.items():
        cells = [
            mean_std([r["test_kept"]["NDCG@10"] for r in group]),
            mean_std([r["test_kept"]["HR@10"] for r in group]),
            mean_std([r["test_excluded"]["NDCG@10"] for r in group]),
            mean_std([r["test_excluded"]["HR@10"] for r in group]),
            f"{statistics.mean(r['test_history_top10'] for r in group):.2f}",
        ]
        lines.append(
            f"| {dataset} | {model} | {implementation} | {epochs} | {size} | {len(group)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def runs(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| dataset | model | impl. | seed | epochs run (best) | NDCG@10 kept | NDCG@10 excl. "
        "| hist. top 10 | own test NDCG@10 | cost | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        epochs = r.get("epochs_run") or r["epochs"]
        per_epoch = r["wall_seconds"] / epochs if epochs else float("nan")
        lines.append(
            f"| {r['dataset']} | {r['model']} | {label(r)} | {r['seed']} "
            f"| {epochs} ({r.get('best_epoch')}) | {r['test_kept']['NDCG@10']:.4f} "
            f"| {r['test_excluded']['NDCG@10']:.4f} | {r['test_history_top10']:.2f} "
            f"| {r['own_test']['NDCG@10']:.4f} "
            f"| {r['wall_seconds'] / 60:.1f} min ({per_epoch:.0f} s/epoch, "
            f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}) | `{r['command']}` |"
        )
    return lines


def render(records: list[dict[str, Any]]) -> str:
    return "\n".join(
        [
            BEGIN,
            "",
            "Test split, mean ± std over seeds; rendered by `python benchmarks/parity/table.py`.",
            "",
            *summary(records),
            "",
            "Every run (own test NDCG@10: the figure the implementation's own evaluator "
            "reported, history kept):",
            "",
            *runs(records),
            "",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print instead of rewriting")
    args = parser.parse_args()
    block = render(load())
    if args.print:
        print(block)
        return
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: no {BEGIN} ... {END} block to rewrite")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)
    print(f"{DOC}: {len(load())} runs")


if __name__ == "__main__":
    main()
