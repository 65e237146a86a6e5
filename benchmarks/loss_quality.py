"""The sampled losses against exact CE at equal epochs, run by run and user by user.

    python benchmarks/loss_quality.py runs/loss/*

Each argument is a finished run directory (``hymoerec train --out DIR``); the runs are
grouped by the loss their ``config.yaml`` records (``train.loss``, and for the sampled
losses ``train.negatives``, ``train.sampler`` or ``train.gbce_t``) and by the directory
name less a trailing seed tag ``-sN``, so that runs of one loss made at different
revisions of the code (``git checkout REV`` before training) stay apart. Printed per run:
the validation NDCG@10 of every epoch as the run logged it, the best epoch, test NDCG@10
/ HR@10 with the history kept and excluded, and mean seconds per epoch. The validation
and test figures of the summary are those of the run's best weights ranked again by
today's code (``precision_parity.summary``: float32 item scores under any autocast),
so runs made at older revisions compare on equal terms. Then per loss
the mean over seeds and its share of exact CE's mean (``chunked_ce`` or ``ce`` runs) on
each ranking, and a Wilcoxon signed-rank test of per-user test NDCG@10 (kept ranking,
seeds averaged per user) against exact CE.

The commands that made the runs of docs/scaling.md are listed there.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import yaml
from precision_parity import mean_sd, print_paired, summary

EXACT = ("ce", "chunked_ce")


def label(run: Path) -> str:
    """The loss of a run as its options name it, e.g. ``sampled_softmax uniform S=1024``."""
    train = yaml.safe_load((run / "config.yaml").read_text())["train"]
    loss = train["loss"]
    if loss in EXACT:
        return "exact CE"
    if loss == "sampled_softmax":
        return f"sampled_softmax {train.get('sampler', 'popularity')} S={train['negatives']}"
    return f"{loss} t={train['gbce_t']} S={train['negatives']}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    groups: dict[str, list[dict]] = defaultdict(list)
    print(
        "| loss [runs] | seed | valid NDCG@10 per epoch | best epoch | test NDCG@10 / HR@10 kept "
        "| test NDCG@10 / HR@10 excluded | s/epoch |"
    )
    print("|---" * 7 + "|")
    for run in sorted(args.runs):
        if not (run / "final.json").is_file():
            continue  # still training
        row = summary(run, ())
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        curve = " ".join(f"{e['valid']['NDCG@10']:.4f}" for e in epochs)
        name = f"{label(run)} [{re.sub(r'-s[0-9]+$', '', run.name)}]"
        groups[name].append(row)
        print(
            f"| {name} | {row['seed']} | {curve} | {row['best_epoch']} "
            f"| {row['test_kept']:.4f} / {row['hr_kept']:.4f} "
            f"| {row['test_excluded']:.4f} / {row['hr_excluded']:.4f} | {row['epoch_s']:.0f} |"
        )
    exact = [row for name, rows in groups.items() if name.startswith("exact CE") for row in rows]
    if not exact:
        return
    print()
    print("| loss [runs] | seeds | test NDCG@10 kept | share | excluded | share | valid | share |")
    print("|---" * 8 + "|")
    for name, rows in sorted(groups.items(), key=lambda item: not item[0].startswith("exact")):
        cells = []
        for key in ("test_kept", "test_excluded", "valid"):
            values = [r[key] for r in rows]
            reference = statistics.mean(r[key] for r in exact)
            cells.append(f"{mean_sd(values)} | {statistics.mean(values) / reference:.1%}")
        print(f"| {name} | {len(rows)} | {' | '.join(cells)} |")
    print()
    for name, rows in groups.items():
        if name.startswith("exact CE"):
            continue
        print_paired(f"{name} - exact CE", rows, exact)


if __name__ == "__main__":
    main()
