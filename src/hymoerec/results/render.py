"""``docs/results.md`` rendered from the run records in ``results/``, never by hand.

Table 1 (HR@5, HR@10, NDCG@5, NDCG@10 per dataset and model, mean ± sample standard
deviation over seeds) with the paper's numbers beside ours, HyMoERec against Mamba4Rec
user by user (Wilcoxon signed-rank test on per-user test NDCG@10, bootstrap confidence
interval of the mean difference), the ablations, the expert analysis figures when they
exist, and every run with what stopped it, so a capped run is never read as converged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from hymoerec.paper import paper_value
from hymoerec.record import EXCLUDED
from hymoerec.reproduce import DATASETS, MODELS, Ablation
from hymoerec.results.records import CAPPED, load_records, summarise
from hymoerec.results.stats import paired_test

TABLE_METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10")
DATASET_LABELS = {"ml-1m": "MovieLens-1M", "amazon-beauty": "Amazon Beauty"}
MODEL_LABELS = {
    "narm": "NARM",
    "gru4rec": "GRU4Rec",
    "bert4rec": "BERT4Rec",
    "sasrec": "SASRec",
    "mamba4rec": "Mamba4Rec",
    "hymoerec": "HyMoERec",
}
NOT_GIVEN = "n/g"  # the paper's value is not given here
NO_RUNS = "–"  # no record yet


def relative_difference(ours: float, paper: float) -> str:
    return f"{100 * (ours - paper) / paper:+.1f}%"


def _select(records: Sequence[dict[str, Any]], dataset: str, name: str) -> list[dict[str, Any]]:
    chosen = [r for r in records if r["dataset"] == dataset and r["name"] == name]
    return sorted(chosen, key=lambda r: r["seed"])


def _datasets(records: Sequence[dict[str, Any]]) -> list[str]:
    others = sorted({r["dataset"] for r in records} - set(DATASETS))
    return [*DATASETS, *others]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def table1(records: Sequence[dict[str, Any]], dataset: str, split: str = "test") -> list[str]:
    """Table 1 for one dataset from the records that have ``split``."""
    headers = ["Model", "seeds"]
    for metric in TABLE_METRICS:
        headers += [metric, "paper", "Δ"]
    rows = []
    for model in MODELS:
        runs = [r for r in _select(records, dataset, model) if split in r]
        row = [MODEL_LABELS[model], str(len(runs))]
        for metric in TABLE_METRICS:
            ours = summarise(runs, metric, split)
            paper = paper_value(dataset, model, metric)
            row.append(ours.cell() if ours else NO_RUNS)
            row.append(f"{paper:.4f}" if paper is not None else NOT_GIVEN)
            row.append(relative_difference(ours.mean, paper) if ours and paper else "")
        rows.append(row)
    return _table(headers, rows)


def paired_section(records: Sequence[dict[str, Any]], datasets: Sequence[str]) -> list[str]:
    headers = ["Dataset", "users", "seeds H / M", "mean Δ NDCG@10", "95% CI", "Wilcoxon p"]
    headers.append("users better / worse")
    rows = []
    for dataset in datasets:
        ours, theirs = _select(records, dataset, "hymoerec"), _select(records, dataset, "mamba4rec")
        if not ours or not theirs:
            continue
        test = paired_test(ours, theirs)
        rows.append(
            [
                DATASET_LABELS.get(dataset, dataset),
                f"{test.users:,}",
                f"{test.seeds_a} / {test.seeds_b}",
                f"{test.mean_difference:+.4f}",
                f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}]",
                f"{test.wilcoxon_p:.3g}",
                f"{test.better:,} / {test.worse:,}",
            ]
        )
    if not rows:
        return ["No dataset has records of both HyMoERec and Mamba4Rec yet."]
    return _table(headers, rows)


def ablation_section(
    records: Sequence[dict[str, Any]], dataset: str, ablations: Sequence[Ablation]
) -> list[str]:
    """One row per variant; each is measured against the model its config names (HyMoERec,
    unless the variant changes the backbone too): relative NDCG@10 under both rankings and
    the user-by-user Wilcoxon p of its per-user test NDCG@10 (history kept)."""
    rows = []
    variants: list[tuple[str, str, str, str | None]] = [
        ("HyMoERec (full)", "the paper's model", "hymoerec", None)
    ]
    for ablation in ablations:
        name = ablation.name if ablation.overrides else ablation.base
        variants.append((ablation.name, ablation.about, name, ablation.compare))
    for label, about, name, compare in variants:
        runs = _select(records, dataset, name)
        reference = _select(records, dataset, compare) if compare is not None else []
        hit = summarise(runs, "HR@10")
        row = [label, about, str(len(runs)), hit.cell() if hit else NO_RUNS]
        for split in ("test", EXCLUDED[1]):
            row += _ndcg_cells(runs, split, reference, compare)
        # same seeds on both sides: each side's per-user values then average as many runs,
        # so under no difference the per-user differences are symmetric, as Wilcoxon assumes
        seeds = {r["seed"] for r in runs}
        matched = [r for r in reference if r["seed"] in seeds]
        same = runs and len(matched) == len(runs)
        rows.append([*row, f"{paired_test(runs, matched).wilcoxon_p:.3g}" if same else ""])
    headers = ["Variant", "what changes", "seeds", "HR@10", "NDCG@10", "Δ NDCG@10"]
    headers += ["NDCG@10, history excluded", "Δ", "Wilcoxon p"]
    lines = _table(headers, rows)
    full = _select(records, dataset, "hymoerec")
    if len(full) > 1:  # the yardstick: two seeds of one model, where nothing differs but luck
        pairs = list(combinations(full, 2))
        ps = sorted(paired_test([b], [a]).wilcoxon_p for a, b in pairs)
        span = f"{ps[0]:.3g}" if len(ps) == 1 else f"from {ps[0]:.3g} to {ps[-1]:.3g}"
        lines += [
            "",
            f"Seed against seed, HyMoERec against itself gives Wilcoxon p {span} "
            f"({len(pairs)} pair{'s' * (len(pairs) > 1)} of its {len(full)} seeds): a "
            "single-seed variant's p measures two runs, training luck included, not the "
            "variant alone.",
        ]
    return lines


def _ndcg_cells(
    runs: Sequence[dict[str, Any]],
    split: str,
    reference: Sequence[dict[str, Any]],
    compare: str | None,
) -> list[str]:
    """NDCG@10 of ``split`` over the runs that have it and, against the reference runs
    that have it too, the relative difference."""
    ours = summarise([r for r in runs if split in r], "NDCG@10", split)
    theirs = summarise([r for r in reference if split in r], "NDCG@10", split)
    delta = ""
    if compare is not None and ours is not None and theirs is not None:
        delta = f"{relative_difference(ours.mean, theirs.mean)} vs {MODEL_LABELS[compare]}"
    return [ours.cell() if ours else NO_RUNS, delta]


def valid_test_section(records: Sequence[dict[str, Any]], datasets: Sequence[str]) -> list[str]:
    """Validation against test NDCG@10 per model: a gap shared by every model is a property
    of the split, not of one model's tuning."""
    rows = []
    for dataset in datasets:
        for model in MODELS:
            runs = _select(records, dataset, model)
            if not runs:
                continue
            valid = float(np.mean([r["valid"]["NDCG@10"] for r in runs]))
            test = float(np.mean([r["test"]["NDCG@10"] for r in runs]))
            rows.append(
                [
                    DATASET_LABELS.get(dataset, dataset),
                    MODEL_LABELS[model],
                    str(len(runs)),
                    f"{valid:.4f}",
                    f"{test:.4f}",
                    relative_difference(test, valid),
                ]
            )
    if not rows:
        return ["No run has finished yet."]
    headers = ["Dataset", "Model", "seeds", "valid NDCG@10", "test NDCG@10", "test vs valid"]
    return _table(headers, rows)


def compute_line(records: Sequence[dict[str, Any]]) -> str:
    """Total training wall time of the records, per device."""
    seconds: dict[str, float] = {}
    for r in records:
        device = r["machine"]["device"]
        seconds[device] = seconds.get(device, 0.0) + r["train_seconds"]
    parts = [f"{s / 3600:.1f} h on {device}" for device, s in sorted(seconds.items())]
    return f"Training wall time of these {len(records)} runs: " + ", ".join(parts) + "."


def runs_section(records: Sequence[dict[str, Any]]) -> list[str]:
    if not records:
        return ["No run has finished yet."]
    rows = []
    for r in sorted(records, key=lambda r: r["key"]):
        commit = r["code"]["commit"][:10] + (" (dirty)" if r["code"]["dirty"] else "")
        rows.append(
            [
                r["key"],
                f"{r['best_epoch']} / {r['epochs_run']}",
                r["stopped"] + (f" {CAPPED}" if r["capped"] else ""),
                f"{r['train_seconds'] / 60:.1f}",
                r["machine"]["device"],
                commit,
            ]
        )
    headers = ["run", "best / epochs", "stopped by", "train min", "device", "commit"]
    return _table(headers, rows)


def analysis_section(analysis_dir: Path, out: Path, datasets: Sequence[str]) -> list[str]:
    from hymoerec.analysis import describe

    lines: list[str] = []
    for dataset in datasets:
        directory = analysis_dir / dataset
        if not directory.is_dir():
            continue
        lines += ["", f"### {DATASET_LABELS.get(dataset, dataset)}", ""]
        for png in sorted(directory.glob("*.png")):
            relative = os.path.relpath(png, out.parent)
            lines.append(f"![{png.stem}]({relative})")
        lines += ["", *describe(directory)]
    if not lines:
        return [
            "No analysis yet: `hymoerec analyze RUN_DIR --out "
            f"{analysis_dir}/DATASET` on a finished HyMoERec run writes it."
        ]
    return lines


def render(
    records: Sequence[dict[str, Any]],
    ablations: Sequence[Ablation],
    out: Path,
    analysis_dir: Path | None = None,
    notes: Path | None = None,
    summary: Path | None = None,
) -> str:
    """The whole results document as Markdown; ``notes``, a hand-written Markdown file of
    findings (each number with the command that measures it), is included as it is, and
    ``summary``, the hand-written conclusion, opens the document."""
    datasets = _datasets(records)
    capped = [r["key"] for r in records if r["capped"]]
    lines = [
        "# Results",
        "",
        "<!-- rendered by `hymoerec results render` from results/*.json; do not edit -->",
        "",
    ]
    if summary is not None and summary.is_file():
        lines += [summary.read_text().strip(), ""]
    lines += [
        f"Rendered from {len(records)} run records in `results/` "
        "(`hymoerec reproduce` writes them; `docs/reproduce.md` says how). Protocol: 5-core, "
        "leave-one-out, full ranking over all items with history items kept, test metrics "
        "at the epoch of best validation NDCG@10. Cells are mean ± sample standard deviation "
        "over seeds (a single seed shows its value alone).",
        "",
        f"{NO_RUNS} no record yet; {NOT_GIVEN}: not in the paper's Table 1 (SASRec is ours); "
        "Δ: (ours − paper) / paper; "
        f"{CAPPED}: at least one run stopped at its wall-clock budget "
        "(`train.max_minutes`) before early stopping, so it may be under-trained.",
    ]
    if capped:
        lines += ["", f"Capped runs ({len(capped)}): " + ", ".join(f"`{k}`" for k in capped)]
    for dataset in datasets:
        lines += ["", f"## Table 1: {DATASET_LABELS.get(dataset, dataset)}", ""]
        lines += table1(records, dataset)
    lines += [
        "",
        "## Table 1 again, with each user's history taken out of the ranking",
        "",
        "The same best weights of every run, re-scored with the items of the user's history "
        "excluded from the ranking (`hymoerec evaluate RUN_DIR --exclude-history`; "
        "`hymoerec results rescore` adds these figures to records written without them). "
        "Many published pipelines rank this way; RecBole's sequential full sort, the "
        "protocol above, does not. Records without these figures are left out here.",
        "",
        "These are also, exactly, the figures of the same runs ranked with the history kept "
        "and the learned penalty on seen items (`train.seen_penalty`, docs/training.md): the "
        "penalty changes nothing in training, and since no validation or test target of "
        "these datasets is an item already in its user's history "
        "(`python benchmarks/parity/repeats.py`), its likelihood fit is infinite and seen "
        "items rank below every unseen one.",
    ]
    for dataset in datasets:
        lines += ["", f"### {DATASET_LABELS.get(dataset, dataset)}, history excluded", ""]
        lines += table1(records, dataset, "test_history_excluded")
    lines += [
        "",
        "## HyMoERec vs Mamba4Rec, user by user",
        "",
        "Per-user test NDCG@10, each model averaged over its seeds, HyMoERec minus Mamba4Rec. "
        "Wilcoxon signed-rank test (two-sided, users with equal values dropped) and a "
        "bootstrap 95% interval of the mean difference (10,000 resamples of users).",
        "",
        *paired_section(records, datasets),
    ]
    lines += ["", "## Ablations", ""]
    lines.append(
        "Each ablation is a config (`configs/ablations.yaml`), not a code change. Δ: against "
        "the mean of the compared model's seeds. Wilcoxon p: the variant's per-user test "
        "NDCG@10 (history kept) against the compared model's runs of the same seeds, so that "
        "both sides average as many runs per user and, with no difference between them, the "
        "per-user differences are symmetric as the test assumes."
    )
    for dataset in datasets:
        lines += ["", f"### {DATASET_LABELS.get(dataset, dataset)}", ""]
        lines += ablation_section(records, dataset, ablations)
    lines += ["", "## What the experts do", ""]
    if analysis_dir is not None:
        lines += analysis_section(analysis_dir, out, datasets)
    lines += ["", "## Validation against test", "", *valid_test_section(records, datasets)]
    if notes is not None and notes.is_file():
        lines += ["", notes.read_text().strip()]
    lines += ["", "## Runs", "", *runs_section(records)]
    if records:
        lines += ["", compute_line(records)]
    lines.append("")
    return "\n".join(lines)


def write_results(
    results: Path,
    out: Path,
    ablations: Sequence[Ablation],
    analysis_dir: Path | None,
    notes: Path | None = None,
) -> Path:
    """Render the results document; the conclusion is read from ``results-summary.md``
    beside the notes."""
    summary = notes.with_name("results-summary.md") if notes is not None else None
    text = render(load_records(results), ablations, out, analysis_dir, notes, summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out
