"""float32 against bfloat16 training, run by run and user by user.

    python benchmarks/precision_parity.py runs/precision/ml-1m-hymoerec-*
    python benchmarks/precision_parity.py --group native_kernels RUN RUN ...  # C kernels

Each argument is a finished run directory (``hymoerec train --out DIR``); the runs are
grouped by the precision their ``config.yaml`` records (``train.bf16``) and paired by
seed. Printed per run: best validation NDCG@10 and its epoch, test NDCG@10 / HR@10 with
the history kept and excluded, mean seconds per epoch, and the wall seconds (epochs) to
validation NDCG@10 thresholds. The validation and test figures are those of the run's
best weights ranked again here by today's code, which takes the item scores in float32
under a bf16 autocast too; a run's own ``final.json`` and ``test_ranks.npy`` hold what
its code ranked then (older bf16 runs: bf16 scores, docs/training.md "bfloat16"). The
thresholds read the validation the run logged as it trained. Then per precision the mean
over seeds, the seed-to-seed spread of float32 (the noise a precision change has to stay
within), and a Wilcoxon signed-rank test of per-user test NDCG@10 (kept ranking, seeds
averaged per user) with a bootstrap interval of the mean difference
(``hymoerec.results.stats``).

The commands that made the runs of docs/training.md are listed there.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

from hymoerec.record import encode_ranks
from hymoerec.results.stats import paired_test
from hymoerec.runtime import resolve_device
from hymoerec.training.rescore import load_run, run_penalty
from hymoerec.training.validation import validate_rankings


def summary(run: Path, thresholds: tuple[float, ...]) -> dict:
    config = yaml.safe_load((run / "config.yaml").read_text())
    final = json.loads((run / "final.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained, model, data = load_run(run)
    device, length = resolve_device(trained.train.device), trained.train.max_len
    penalty = run_penalty(run)  # the seen-item penalty the run learned, 0 where none
    model.to(device)
    (valid,) = validate_rankings(
        model, data, "valid", length, trained.train, device, (False,), seen_penalty=penalty
    )
    kept, excluded = validate_rankings(
        model, data, "test", length, trained.train, device, seen_penalty=penalty
    )
    metrics = ["NDCG@10", "HR@10"]
    kept_figures, excluded_figures = kept.summary(metrics), excluded.summary(metrics)
    reached = {}
    for threshold in thresholds:
        hit = next((e for e in epochs if e["valid"]["NDCG@10"] >= threshold), None)
        reached[threshold] = (hit["elapsed"], hit["epoch"]) if hit else None
    return {
        "run": run.name,
        "bf16": bool(config["train"]["bf16"]),
        "compile_scan": bool(config["train"].get("compile_scan", False)),
        # runs from before train.native_kernels existed ran without the C kernels
        "native_kernels": bool(config["train"].get("native_kernels", False)),
        "seed": config["train"]["seed"],
        "best_epoch": final["best_epoch"],
        "valid": valid.summary(["NDCG@10"])["NDCG@10"],
        "test_kept": kept_figures["NDCG@10"],
        "hr_kept": kept_figures["HR@10"],
        "test_excluded": excluded_figures["NDCG@10"],
        "hr_excluded": excluded_figures["HR@10"],
        "epoch_s": statistics.mean(e["seconds"] for e in epochs),
        "reached": reached,
        "record": {"test_rank_top10": encode_ranks(kept.ranks)},
    }


# what the two sides of a comparison differ in: (the side without, the side with)
GROUPS = {"bf16": ("float32", "bf16"), "native_kernels": ("without the kernels", "C kernels")}


def mean_sd(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--thresholds", default="0.10,0.12", help="validation NDCG@10 levels")
    parser.add_argument(
        "--group",
        choices=sorted(GROUPS),
        default="bf16",
        help="what the two sides differ in: the precision or the C kernels",
    )
    args = parser.parse_args()
    key = args.group
    base, other = GROUPS[key]
    thresholds = tuple(float(t) for t in args.thresholds.split(","))
    rows = sorted((summary(r, thresholds) for r in args.runs), key=lambda r: (r["seed"], r[key]))

    reach = " | ".join(f"s (epoch) to {t:.2f}" for t in thresholds)
    print(
        "| run | precision | seed | best epoch | valid NDCG@10 | test NDCG@10 / HR@10 kept "
        f"| test NDCG@10 / HR@10 excluded | s/epoch | {reach} |"
    )
    print("|---" * (8 + len(thresholds)) + "|")
    for r in rows:
        precision = ("bf16" if r["bf16"] else "float32") + (
            " + compiled scan" if r["compile_scan"] else ""
        )
        precision += " + C kernels" if r["native_kernels"] else ""
        cells = [
            f"{r['reached'][t][0]:.0f} ({r['reached'][t][1]})" if r["reached"][t] else "not reached"
            for t in thresholds
        ]
        print(
            f"| {r['run']} | {precision} | {r['seed']} | {r['best_epoch']} | {r['valid']:.4f} "
            f"| {r['test_kept']:.4f} / {r['hr_kept']:.4f} "
            f"| {r['test_excluded']:.4f} / {r['hr_excluded']:.4f} | {r['epoch_s']:.0f} "
            f"| {' | '.join(cells)} |"
        )
    sides = {on: [r for r in rows if r[key] == on] for on in (False, True)}
    if not sides[False] or not sides[True]:
        return
    print()
    for metric, label in [("test_kept", "kept"), ("test_excluded", "excluded"), ("valid", "valid")]:
        off = [r[metric] for r in sides[False]]
        on = [r[metric] for r in sides[True]]
        noise = f", {base} seed spread {max(off) - min(off):.4f}" if len(off) > 1 else ""
        print(
            f"NDCG@10 {label}: {base} {mean_sd(off)}, {other} {mean_sd(on)}, "
            f"{other} / {base} {statistics.mean(on) / statistics.mean(off):.3f}{noise}"
        )
    comparisons = [(f"{other} - {base}, seeds averaged per user", sides[True], sides[False])]
    comparisons += [
        (f"{other} - {base}, seed {a['seed']}", [a], [b])
        for a, b in zip(sides[True], sides[False], strict=False)
        if a["seed"] == b["seed"]
    ]
    if len(sides[False]) > 1:  # the yardstick: two base runs that differ only by seed
        first, second = sides[False][:2]
        comparisons.append(
            (f"{base} seed {second['seed']} - seed {first['seed']}", [second], [first])
        )
    for label, a_runs, b_runs in comparisons:
        print_paired(label, a_runs, b_runs)


def print_paired(label: str, a_runs: list[dict], b_runs: list[dict]) -> None:
    """Per-user test NDCG@10 (kept ranking) of ``a_runs`` minus ``b_runs``, seeds
    averaged per user: mean difference, bootstrap interval, Wilcoxon p."""
    test = paired_test([r["record"] for r in a_runs], [r["record"] for r in b_runs])
    print(
        f"per user, test NDCG@10 kept, {label} ({test.users} users): "
        f"{test.mean_difference:+.4f} [{test.ci_low:+.4f}, {test.ci_high:+.4f}], "
        f"Wilcoxon p = {test.wilcoxon_p:.2g}, higher for {test.better}, lower for {test.worse}"
    )


if __name__ == "__main__":
    main()
