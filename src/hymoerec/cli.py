"""The ``hymoerec`` command line: a thin router to plain functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hymoerec.data.cache import is_cached, load_dataset
from hymoerec.data.errors import DataError
from hymoerec.data.protocol import TIE_ORDERS, ProtocolConfig, SequenceData, statistics
from hymoerec.data.registry import READERS, Source, resolve

# torch-backed modules are imported inside the commands that need them, so data commands
# start fast and stay small.
BASELINE_NAMES = ("pop", "transition")
DEFAULT_METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@10")


def _numeric(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
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
        any(isinstance(cell, str) and not _numeric(cell) for cell in (row[i] for row in rows))
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


def _add_dataset_options(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        help="directory holding the named datasets (default: $HYMOEREC_DATA, else ./data)",
    )
    group.add_argument(
        "--cache-dir",
        help="where prepared datasets are cached "
        "(default: $HYMOEREC_CACHE, else ~/.cache/hymoerec)",
    )
    group.add_argument("--user-core", type=int, default=5, help="k-core threshold for users")
    group.add_argument("--item-core", type=int, default=5, help="k-core threshold for items")
    group.add_argument(
        "--ties",
        choices=TIE_ORDERS,
        default="file",
        help="order of one user's interactions with equal timestamps (default: the file's)",
    )
    group.add_argument("--format", choices=sorted(READERS), help="format of a file dataset")
    group.add_argument("--user-col", help="user column of a CSV/TSV/Parquet file")
    group.add_argument("--item-col", help="item column of a CSV/TSV/Parquet file")
    group.add_argument("--time-col", help="timestamp column of a CSV/TSV/Parquet file")
    group.add_argument("--rating-col", help="rating column of a CSV/TSV/Parquet file")
    group.add_argument("--min-rating", type=float, help="drop interactions rated below this")


def _reader_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    for name in ("user_col", "item_col", "time_col", "rating_col", "min_rating"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    return options


def _load(args: argparse.Namespace, dataset: str) -> tuple[Source, SequenceData]:
    protocol = ProtocolConfig(args.user_core, args.item_core, args.ties)
    return load_dataset(
        dataset, args.data_dir, args.cache_dir, protocol, args.format, _reader_options(args)
    )


def cmd_data_stats(args: argparse.Namespace) -> None:
    source, data = _load(args, args.dataset)
    stats = statistics(data)
    stats["max_len"] = source.max_len
    if args.json:
        print(json.dumps(stats, indent=2))
        return
    print(
        f"{source.name} ({source.path}, format {source.format}, "
        f"{args.user_core}-core users / {args.item_core}-core items, leave-one-out)"
    )
    print(_table(["statistic", "value"], [[k, v] for k, v in stats.items()]))


def cmd_data_prepare(args: argparse.Namespace) -> None:
    protocol = ProtocolConfig(args.user_core, args.item_core, args.ties)
    source = resolve(args.dataset, args.data_dir, args.format, _reader_options(args))
    cached = is_cached(source, protocol, args.cache_dir)
    begin = time.perf_counter()
    _, data = _load(args, args.dataset)
    seconds = time.perf_counter() - begin
    state = "loaded from cache" if cached else "prepared and cached"
    print(
        f"{source.name}: {data.num_users:,} users, {data.num_items:,} items, "
        f"{data.num_interactions:,} interactions; {state} in {seconds:.3f} s"
    )


def _metrics_table(report: dict[str, dict[str, float]], metrics: Sequence[str]) -> str:
    rows = [[split, *(report[split][m] for m in metrics)] for split in ("valid", "test")]
    return _table(["split", *metrics], rows)


def cmd_train(args: argparse.Namespace) -> None:
    from hymoerec.config import load_run_config
    from hymoerec.training.run import train

    base = {k: v for k, v in (("model", args.model), ("dataset", args.dataset)) if v}
    if args.data_dir:
        base["data"] = {"data_dir": args.data_dir}
    config = load_run_config(args.config, args.set or [], base)
    out = (
        Path(args.out)
        if args.out
        else Path("runs")
        / (f"{config.model}-{Path(config.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    final = train(config, out, progress=not args.quiet, resume=args.resume)
    if not final:  # a data-parallel rank other than 0: rank 0 reports
        return
    print(
        f"{config.model} on {final['dataset']}: best epoch {final['best_epoch']} of "
        f"{final['epochs_run']} ({final['stopped']}), {final['train_seconds']:.0f} s; "
        f"{final['protocol']}"
    )
    print(_metrics_table({"valid": final["valid"], "test": final["test"]}, DEFAULT_METRICS))
    print(f"run directory: {out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.run_dir is not None:
        from hymoerec.training.run import evaluate_run

        if args.model is not None:
            raise DataError("give either a run directory or --model, not both")
        report = evaluate_run(Path(args.run_dir), args.exclude_history)
        protocol = "history items excluded" if args.exclude_history else "history items ranked"
        if args.json:  # the shape of the reference models' report, plus the run
            from hymoerec.rundir import read_config

            config = read_config(Path(args.run_dir))
            by_split = {split: report[split] for split in ("valid", "test")}
            about = {"model": config.model, "dataset": config.dataset, "run": args.run_dir}
            print(json.dumps({**about, "protocol": protocol, "metrics": by_split}, indent=2))
        else:
            print(f"{args.run_dir}: full ranking, {protocol}")
            print(_metrics_table(report, DEFAULT_METRICS))
        return
    from hymoerec.evaluation.baselines import BASELINES
    from hymoerec.evaluation.evaluator import evaluate
    from hymoerec.evaluation.metrics import parse_metric

    metrics = [m.strip() for m in args.metrics.split(",")]
    for m in metrics:
        parse_metric(m)
    if args.model is None or args.dataset is None:
        raise DataError("evaluate needs --model and --dataset")
    source, data = _load(args, args.dataset)
    scorer = BASELINES[args.model](data)
    max_len = args.max_len or source.max_len
    rows, report = [], {}
    for split in ("valid", "test"):
        result = evaluate(
            scorer,
            data,
            split,
            max_len,
            batch_size=args.batch_size,
            exclude_history=args.exclude_history,
            progress=True,
        )
        summary = result.summary(metrics)
        report[split] = summary
        rows.append([split, *summary.values()])
    protocol = "history items excluded" if args.exclude_history else "history items ranked"
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "dataset": source.name,
                    "protocol": protocol,
                    "metrics": report,
                },
                indent=2,
            )
        )
        return
    print(
        f"{args.model} on {source.name}: full ranking over {data.num_items:,} items, "
        f"{protocol}, {data.num_users:,} users"
    )
    print(_table(["split", *metrics], rows))


def _recommendation_table(result: object) -> str:
    from hymoerec.recommend import Recommendation

    assert isinstance(result, Recommendation)
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
    lines.append(_table(headers, rows))
    return "\n".join(lines)


def cmd_recommend(args: argparse.Namespace) -> None:
    from hymoerec.recommend import Recommender

    if (args.user is None) == (args.history is None):
        raise DataError("give exactly one of --user and --history")
    recommender = Recommender.load(args.run_dir, args.device, args.data_dir)
    if args.user is not None:
        result = recommender.recommend_users([args.user], args.k, not args.include_seen)[0]
        about = f"user {args.user}"
    else:
        history = [item.strip() for item in args.history.split(",") if item.strip()]
        result = recommender.recommend(history, args.k, not args.include_seen)
        about = f"a history of {len(history)} items"
    if args.json:
        report = {"unknown": result.unknown, "fallback": result.fallback, "items": result.rows()}
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    seen = "seen items included" if args.include_seen else "seen items excluded"
    print(f"top {args.k} for {about} ({recommender.name}, {seen})")
    print(_recommendation_table(result))


def cmd_plot(args: argparse.Namespace) -> None:
    _require("matplotlib", "plot")
    from hymoerec.plots import plot_training

    out = plot_training(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"training curves: {out}")


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DataError(f"this command needs {module}: pip install 'hymoerec[{extra}]'")


def cmd_serve(args: argparse.Namespace) -> None:
    _require("fastapi", "serve")
    _require("uvicorn", "serve")
    import torch

    from hymoerec.recommend import Recommender
    from hymoerec.serving.app import serve

    if args.threads:
        torch.set_num_threads(args.threads)
    recommender = Recommender.load(args.run_dir, args.device, args.data_dir)
    print(f"serving {recommender.name} on http://{args.host}:{args.port} (docs at /docs)")
    serve(recommender, args.host, args.port, args.max_batch)


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
    )
    done = [run for run in plan if reproduce.record_path(run, options).is_file()]
    print(f"{len(plan)} runs planned, {len(done)} already recorded in {options.results}/")
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
    _require("scipy", "analysis")
    from hymoerec.reproduce import load_ablations
    from hymoerec.results import write_results

    ablations_file = Path(args.ablations)
    ablations = list(load_ablations(ablations_file).values()) if ablations_file.is_file() else []
    out = write_results(
        Path(args.results), Path(args.out), ablations, Path(args.analysis), Path(args.notes)
    )
    print(f"results document: {out}")


def cmd_results_compare(args: argparse.Namespace) -> None:
    _require("scipy", "analysis")
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
    _require("matplotlib", "analysis")
    from hymoerec.analysis import analyze_run

    for path in analyze_run(Path(args.run_dir), Path(args.out) if args.out else None):
        print(path)


DEMO_EPOCHS = {"ml-100k": 15, "ml-1m": 3}


def cmd_demo(args: argparse.Namespace) -> None:
    from hymoerec.config import load_run_config
    from hymoerec.recommend import Recommender
    from hymoerec.training.run import train

    source, data = _load(args, args.dataset)
    sizes = [[source.name, data.num_users, data.num_items, data.num_interactions]]
    print(_table(["dataset", "users", "items", "interactions"], sizes))
    epochs = args.epochs or DEMO_EPOCHS.get(source.name, 5)
    overrides = {"model": "hymoerec", "dataset": args.dataset, "data": {}}
    if args.data_dir:
        overrides["data"] = {"data_dir": args.data_dir}
    settings = [f"train.epochs={epochs}", "train.batch_size=32", "train.warmup_steps=100"]
    config = load_run_config(None, settings, overrides)
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / (f"demo-{source.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    print(f"\ntraining HyMoERec for {epochs} epochs (a short demo run) ...")
    final = train(config, out, progress=True)
    print(f"\n{final['protocol']}; best epoch {final['best_epoch']} of {final['epochs_run']}")
    print(_metrics_table({"valid": final["valid"], "test": final["test"]}, DEFAULT_METRICS))
    recommender = Recommender.load(out)
    user = data.users.external[0]
    history = recommender.user_history(user)
    print(f"\nuser {user}: {len(history)} interactions; the last five:")
    for item in history[-5:]:
        print(f"  {item}  {recommender.metadata.get(item, {}).get('title', '')}")
    print(f"top 10 for user {user} (seen items excluded):")
    print(_recommendation_table(recommender.recommend_users([user], 10)[0]))
    config_file = Path("configs") / f"{source.name}-hymoerec.yaml"
    full = (
        f"--config {config_file}"
        if config_file.is_file()
        else f"--model hymoerec --dataset {args.dataset}"
    )
    print(
        "\nnext steps:\n"
        f"  full training:   hymoerec train {full} --data-dir {args.data_dir or '<data dir>'}\n"
        f"  recommend:       hymoerec recommend {out} --user {user}\n"
        f"  serve over HTTP: hymoerec serve {out} --port 8000   (API docs at /docs)\n"
        f"  curves:          hymoerec plot {out}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hymoerec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="prepare datasets and show their statistics")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="print the protocol's statistics table")
    _add_dataset_options(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_data_stats)
    prepare = data_commands.add_parser("prepare", help="build the prepared-dataset cache")
    _add_dataset_options(prepare)
    prepare.set_defaults(handler=cmd_data_prepare)

    tr = commands.add_parser("train", help="train a model into a run directory")
    tr.add_argument("--model", help="hymoerec, mamba4rec, sasrec, bert4rec, gru4rec, narm")
    tr.add_argument("--dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    tr.add_argument("--config", help="YAML run config (model, dataset, model_options, train, data)")
    tr.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one option, e.g. train.lr=0.002 or model_options.moe.top_k=1",
    )
    tr.add_argument("--data-dir", help="directory of the named datasets")
    tr.add_argument("--out", help="run directory to create (default runs/MODEL-DATASET-TIME)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT.partial/ (its last end-of-epoch checkpoint)",
    )
    tr.set_defaults(handler=cmd_train)

    ev = commands.add_parser("evaluate", help="full-ranking evaluation on valid and test")
    ev.add_argument("run_dir", nargs="?", help="a run directory written by `hymoerec train`")
    ev.add_argument(
        "--model",
        choices=BASELINE_NAMES,
        help="a non-learned baseline (instead of a run directory)",
    )
    ev.add_argument("--dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    _add_dataset_options(ev, positional=False)
    ev.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help="comma-separated metrics, e.g. HR@5,NDCG@10,MRR@20",
    )
    ev.add_argument(
        "--max-len",
        type=int,
        help="history length seen by the model (default: the dataset's, 200 for ML, 50 for Beauty)",
    )
    ev.add_argument("--batch-size", type=int, default=1024, help="users scored at once")
    ev.add_argument(
        "--exclude-history",
        action="store_true",
        help="remove the user's history items from the ranking "
        "(default: keep them, as the paper's protocol does)",
    )
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(handler=cmd_evaluate)

    rec = commands.add_parser("recommend", help="top-k next items for a user or a history")
    rec.add_argument("run_dir", help="a run directory written by `hymoerec train`")
    rec.add_argument("--user", help="a user id of the training data (their full history)")
    rec.add_argument("--history", help="comma-separated raw item ids, oldest first")
    rec.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    rec.add_argument(
        "--include-seen", action="store_true", help="allow items of the history to come back"
    )
    rec.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    rec.add_argument("--data-dir", help="data directory, for runs without a stored dataset")
    rec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rec.set_defaults(handler=cmd_recommend)

    pl = commands.add_parser("plot", help="training curves of a run as PNG")
    pl.add_argument("run_dir", help="a run directory written by `hymoerec train`")
    pl.add_argument("--out", help="PNG file to write (default RUN_DIR/training.png)")
    pl.set_defaults(handler=cmd_plot)

    sv = commands.add_parser("serve", help="HTTP service: POST /recommend, GET /items/{id}")
    sv.add_argument("run_dir", help="a run directory written by `hymoerec train`")
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument(
        "--max-batch", type=int, default=64, help="most concurrent requests in one model call"
    )
    sv.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for the model (default 1: the event loop keeps a core; "
        "0 = torch's default)",
    )
    sv.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sv.add_argument("--data-dir", help="data directory, for runs without a stored dataset")
    sv.set_defaults(handler=cmd_serve)

    demo = commands.add_parser(
        "demo", help="prepare a dataset, train HyMoERec briefly, show metrics and top-10"
    )
    demo.add_argument("dataset", nargs="?", default="ml-1m", help="ml-1m (default) or ml-100k")
    _add_dataset_options(demo, positional=False)
    demo.add_argument("--epochs", type=int, help="training epochs (default 3 ML-1M, 15 ML-100K)")
    demo.add_argument("--out", help="run directory (default runs/demo-DATASET-TIME)")
    demo.set_defaults(handler=cmd_demo)

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
    rp.add_argument("--data-dir", help="directory of the named datasets")
    rp.add_argument(
        "--max-minutes", type=float, default=0.0, help="training cap per run; 0 = none (paper)"
    )
    rp.add_argument("--device", help="override train.device of the configs (cpu, cuda)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        args.handler(args)
    except KeyboardInterrupt as interrupt:
        print(f"hymoerec: interrupted; {_kept(interrupt, args.command)}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except (DataError, ValueError, OSError) as error:
        print(f"hymoerec: error: {error}", file=sys.stderr)
        return 2
    return 0


def _kept(interrupt: KeyboardInterrupt, command: str) -> str:
    """What an interrupted command left on disk, and how to continue it."""
    kept = getattr(interrupt, "kept", None)  # set by training (TrainingInterrupted)
    if kept is None:
        return "nothing unfinished was kept (a run or cache entry in progress is removed)"
    how = "with --resume" if command == "train" else "again"  # reproduce resumes by itself
    return (
        f"kept {kept}/ (its last end-of-epoch checkpoint); to continue, run the same command {how}"
    )


if __name__ == "__main__":
    sys.exit(main())
