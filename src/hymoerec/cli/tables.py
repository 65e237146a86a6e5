"""Every table the commands print: one plain-text layout, numbers right, text left."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-backed: imported by the commands that recommend
    from hymoerec.recommend import Recommendation

# the columns of the metrics table after training, and evaluate's default --metrics
DEFAULT_METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@10")


def numeric(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [
        [
            f"{v:,.4f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
            for v in row
        ]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    # numbers align right, text (titles, names) left
    text = [
        any(isinstance(cell, str) and not numeric(cell) for cell in (row[i] for row in rows))
        for i in range(len(headers))
    ]
    lines = [
        " | ".join(
            c.ljust(w) if left else c.rjust(w) for c, w, left in zip(r, widths, text, strict=True)
        ).rstrip()
        for r in cells
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def metrics_table(report: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> str:
    rows = [[split, *(report[split][m] for m in metrics)] for split in ("valid", "test")]
    return table(["split", *metrics], rows)


def recommendation_table(result: Recommendation) -> str:
    """A top-k list, its titles when the run has them, after notes on the history read."""
    titled = any("title" in meta for meta in result.metadata)
    headers = ["rank", "item", "title", "score"] if titled else ["rank", "item", "score"]
    rows = [
        [
            row["rank"],
            row["item_id"],
            *([row.get("title", "")] if titled else []),
            f"{row['score']:.4f}",
        ]
        for row in result.rows()
    ]
    lines = []
    if result.unknown:
        lines.append(f"unknown item ids dropped: {', '.join(result.unknown)}")
    if result.fallback:
        lines.append(f"note: {result.fallback}")
    lines.append(table(headers, rows))
    return "\n".join(lines)
