"""``hymoerec reproduce`` (train the whole comparison), ``hymoerec results render|compare|
rescore`` (documents and tests built from its run records) and ``hymoerec analyze`` (the
expert-routing analysis that the results document includes)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hymoerec.cli.options import (
    Commands,
    add_compute_options,
    add_dataset_options,
    given_data_options,
    require,
)
from hymoerec.cli.tables import plural
from hymoerec.data.errors import DataError


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise DataError(f"seeds must be comma-separated integers, got {text!r}") from None


def cmd_reproduce(args: argparse.Namespace) -> None:
    from hymoerec import reproduce

    ablations = reproduce.load_ablations(Path(args.configs) / "ablations.yaml")
    chosen = [] if args.ablations == "none" else list(ablations)
    if args.ablations not in ("all", "none"):
        chosen = _names(args.ablations, list(ablations), "ablation")
    plan = reproduce.make_plan(
        _names(args.datasets, [*reproduce.DATASETS, "ml-100k"], "dataset"),
        _names(args.models, reproduce.MODELS, "model"),
        _seeds(args.seeds),
        _seeds(args.baseline_seeds),
        [ablations[name] for name in chosen],
        _seeds(args.ablation_seeds),
    )
    options = reproduce.ReproduceOptions(
        configs=Path(args.configs),
        runs_dir=Path(args.runs_dir),
        results=Path(args.results),
        data_dir=args.data_dir,
        max_minutes=args.max_minutes,
        device=args.device,
        threads=args.threads,
        data={k: v for k, v in given_data_options(args).items() if k != "data_dir"},
    )
    done = [run for run in plan if reproduce.record_path(run, options).is_file()]
    print(f"{plural(len(plan), 'run')} planned, {len(done)} already recorded in {options.results}/")
    if args.dry_run:
        for run in plan:
            state, detail = reproduce.standing(run, options)
            config = options.configs / f"{run.dataset}-{run.model}.yaml"
            print(f"  {run.key:45} {state:7} {config} {' '.join(run.overrides)}")
            if detail:
                print(f"  {'':45} {detail}")
        return
    order = plan[::-1] if args.reverse else plan
    written = reproduce.execute(order, options, progress=not args.quiet)
    print(f"{len(written)} new records; render them with `hymoerec results render`")


def cmd_results_render(args: argparse.Namespace) -> None:
    require("scipy", "analysis")
    from hymoerec.reproduce import load_ablations
    from hymoerec.results import write_results

    ablations_file = Path(args.ablations)
    ablations = list(load_ablations(ablations_file).values()) if ablations_file.is_file() else []
    out = write_results(
        Path(args.results), Path(args.out), ablations, Path(args.analysis), Path(args.notes)
    )
    print(f"results document: {out}")


def cmd_results_compare(args: argparse.Namespace) -> None:
    require("scipy", "analysis")
    from hymoerec.results import load_record, paired_test

    a = [load_record(Path(path)) for path in args.records]
    b = [load_record(Path(path)) for path in args.against]
    datasets = sorted({record["dataset"] for record in a + b})
    if len(datasets) > 1:
        raise DataError(f"the compared records come from different datasets: {datasets}")
    test = paired_test(a, b)
    names = lambda side: ", ".join(record["key"] for record in side)  # noqa: E731
    print(f"A: {names(a)}")
    print(f"B: {names(b)}")
    print(f"users {test.users}; per-user test NDCG@10, A minus B (seeds averaged per user)")
    print(
        f"mean difference {test.mean_difference:+.4f}, bootstrap 95% interval "
        f"{test.ci_low:+.4f} to {test.ci_high:+.4f}"
    )
    print(
        f"Wilcoxon p {test.wilcoxon_p:.3g}; A higher for {test.better} users, "
        f"lower for {test.worse}"
    )


def cmd_results_rescore(args: argparse.Namespace) -> None:
    from hymoerec import reproduce

    options = reproduce.ReproduceOptions(runs_dir=Path(args.runs_dir), results=Path(args.results))
    rewritten = reproduce.rescore(options)
    print(f"{len(rewritten)} records re-scored; render them with `hymoerec results render`")


def cmd_analyze(args: argparse.Namespace) -> None:
    require("matplotlib", "analysis")
    from hymoerec.analysis import analyze_run

    for path in analyze_run(Path(args.run_dir), Path(args.out) if args.out else None):
        print(path)


def add_parsers(commands: Commands) -> None:
    rp = commands.add_parser(
        "reproduce", help="train the whole comparison; skips recorded runs, resumes partial ones"
    )
    rp.add_argument("--datasets", default="ml-1m,amazon-beauty", help="comma-separated")
    rp.add_argument(
        "--models",
        default="narm,gru4rec,bert4rec,sasrec,mamba4rec,hymoerec",
        help="comma-separated",
    )
    rp.add_argument("--seeds", default="1,2,3", help="seeds of HyMoERec and Mamba4Rec")
    rp.add_argument("--baseline-seeds", default="1", help="seeds of the other baselines")
    rp.add_argument(
        "--ablations", default="all", help="all, none, or names from CONFIGS/ablations.yaml"
    )
    rp.add_argument("--ablation-seeds", default="1", help="seeds of every ablation")
    rp.add_argument("--configs", default="configs", help="directory of DATASET-MODEL.yaml")
    rp.add_argument("--runs-dir", default="runs/reproduce", help="run directories (not in git)")
    rp.add_argument("--results", default="results", help="one JSON record per finished run")
    add_dataset_options(rp, positional=False)
    add_compute_options(rp)
    rp.add_argument(
        "--max-minutes", type=float, default=0.0, help="training cap per run; 0 = none (paper)"
    )
    rp.add_argument(
        "--dry-run", action="store_true", help="print the plan and how far each run has got"
    )
    rp.add_argument(
        "--reverse",
        action="store_true",
        help="train the plan from its last run backwards (a second worker on the same plan)",
    )
    rp.add_argument("--quiet", action="store_true", help="no progress bars")
    rp.set_defaults(handler=cmd_reproduce)

    rs = commands.add_parser("results", help="documents built from the run records")
    rs_commands = rs.add_subparsers(dest="results_command", required=True)
    render = rs_commands.add_parser("render", help="write docs/results.md from results/*.json")
    render.add_argument("--results", default="results", help="directory of run records")
    render.add_argument("--out", default="docs/results.md", help="Markdown file to write")
    render.add_argument(
        "--ablations", default="configs/ablations.yaml", help="names and descriptions of ablations"
    )
    render.add_argument(
        "--analysis", default="docs/analysis", help="`hymoerec analyze` outputs, one per dataset"
    )
    render.add_argument(
        "--notes",
        default="docs/results-notes.md",
        help="hand-written findings included in the document, when the file exists",
    )
    render.set_defaults(handler=cmd_results_render)
    compare = rs_commands.add_parser(
        "compare", help="user-by-user test of two sets of run records (Wilcoxon, bootstrap)"
    )
    compare.add_argument("records", nargs="+", help="run records of A (results/*.json)")
    compare.add_argument(
        "--against", nargs="+", required=True, help="run records of B, on the same test users"
    )
    compare.set_defaults(handler=cmd_results_compare)
    rescore = rs_commands.add_parser(
        "rescore", help="add history-excluded metrics to records that lack them"
    )
    rescore.add_argument("--results", default="results", help="directory of run records")
    rescore.add_argument("--runs-dir", default="runs/reproduce", help="their run directories")
    rescore.set_defaults(handler=cmd_results_rescore)

    an = commands.add_parser("analyze", help="expert routing tables and figures of a MoE run")
    an.add_argument("run_dir", help="a run directory written by `hymoerec train`")
    an.add_argument("--out", help="directory for the CSV and PNG files (default RUN_DIR/analysis)")
    an.set_defaults(handler=cmd_analyze)
