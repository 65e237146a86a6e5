"""The ``hymoerec`` command line: a thin router to plain functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hymoerec.config import DataConfig, data_source, from_dict, prepare_dataset
from hymoerec.data.cache import is_cached, prepare
from hymoerec.data.errors import DataError
from hymoerec.data.protocol import TIE_ORDERS, SequenceData, statistics
from hymoerec.data.registry import READERS, Source

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


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


# The data specification (hymoerec.config.DataConfig) as command-line options, the same for
# every command that reads a dataset. Defaults are None so that an option given can be told
# from one left out: a command that cannot honour an option given rejects it.
DATA_OPTIONS = (
    "data_dir",
    "cache_dir",
    "user_core",
    "item_core",
    "ties",
    "format",
    "user_col",
    "item_col",
    "time_col",
    "rating_col",
    "min_rating",
    "sep",
    "encoding",
)


def _add_dataset_options(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("dataset", help="ml-1m, ml-100k, amazon-beauty, or a file path")
    group = parser.add_argument_group("data (run configs: the data section)")
    group.add_argument(
        "--data-dir",
        help="directory holding the named datasets (default: $HYMOEREC_DATA, else ./data)",
    )
    group.add_argument(
        "--cache-dir",
        help="where prepared datasets are cached "
        "(default: $HYMOEREC_CACHE, else ~/.cache/hymoerec)",
    )
    group.add_argument("--user-core", type=int, help="k-core threshold for users (default 5)")
    group.add_argument("--item-core", type=int, help="k-core threshold for items (default 5)")
    group.add_argument(
        "--ties",
        choices=TIE_ORDERS,
        help="order of one user's interactions with equal timestamps (default: the file's)",
    )
    group.add_argument(
        "--format",
        choices=sorted(READERS),
        help="format of a file dataset (default: recognised from its content)",
    )
    group.add_argument("--user-col", help="user column of a table file (default: user_id, ...)")
    group.add_argument("--item-col", help="item column of a table file (default: item_id, ...)")
    group.add_argument(
        "--time-col",
        help="time column of a table file (default: timestamp, ...; '' = the file's order)",
    )
    group.add_argument("--rating-col", help="rating column of a table file (default: rating)")
    group.add_argument("--min-rating", type=float, help="drop interactions rated below this")
    group.add_argument("--sep", help="field separator of a table file (default: from the file)")
    group.add_argument("--encoding", help="text encoding (default: the format's)")


def _add_compute_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """--threads (and --device) for a command that computes."""
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: physical cores not kept busy by other processes)",
    )
    if device:
        parser.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    parser.set_defaults(computes=True)


def _given_data_options(args: argparse.Namespace) -> dict[str, object]:
    """The data options given on the command line, by their config names."""
    options = {}
    for name in DATA_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = "\t" if name == "sep" and value == "\\t" else value
    return options


def _data_config(args: argparse.Namespace) -> DataConfig:
    return from_dict(DataConfig, _given_data_options(args), "data.")


def _load(args: argparse.Namespace, dataset: str) -> tuple[Source, SequenceData]:
    return prepare_dataset(dataset, _data_config(args))


def _reading(source: Source) -> str:
    """How a source is read, in words: its format and, for a table, its columns."""
    options = ", ".join(
        f"{key} {value!r}" for key, value in source.options.items() if key.endswith("_col")
    )
    return f"format {source.format}" + (f"; {options}" if options else "")


def cmd_data_stats(args: argparse.Namespace) -> None:
    spec = _data_config(args)
    source, data = prepare_dataset(args.dataset, spec)
    stats = statistics(data)
    stats["max_len"] = source.max_len
    if args.json:
        print(json.dumps(stats, indent=2))
        return
    print(
        f"{source.name} ({source.path}, {_reading(source)}, "
        f"{spec.user_core}-core users / {spec.item_core}-core items, leave-one-out)"
    )
    print(_table(["statistic", "value"], [[k, v] for k, v in stats.items()]))


def cmd_data_prepare(args: argparse.Namespace) -> None:
    spec = _data_config(args)
    source = data_source(args.dataset, spec)
    cached = is_cached(source, spec.protocol(), spec.cache_dir)
    begin = time.perf_counter()
    data = prepare(source, spec.protocol(), spec.cache_dir)
    seconds = time.perf_counter() - begin
    state = "loaded from cache" if cached else "prepared and cached"
    print(
        f"{source.name} ({_reading(source)}): {_plural(data.num_users, 'user')}, "
        f"{_plural(data.num_items, 'item')}, {_plural(data.num_interactions, 'interaction')}; "
        f"{state} in {seconds:.3f} s"
    )


def _metrics_table(report: dict[str, dict[str, float]], metrics: Sequence[str]) -> str:
    rows = [[split, *(report[split][m] for m in metrics)] for split in ("valid", "test")]
    return _table(["split", *metrics], rows)


def _run_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Command-line options as a partial run config: --dataset, the data options,
    --threads and --device."""
    base: dict[str, object] = {}
    for key in ("model", "dataset"):
        if getattr(args, key, None):
            base[key] = getattr(args, key)
    data = _given_data_options(args)
    if data:
        base["data"] = data
    train = {k: getattr(args, k) for k in ("threads", "device") if getattr(args, k) is not None}
    if train:
        base["train"] = train
    return base


def cmd_train(args: argparse.Namespace) -> None:
    from hymoerec.config import load_run_config
    from hymoerec.training.run import train

    config = load_run_config(args.config, args.set or [], _run_overrides(args))
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


def _protocol(exclude_history: bool) -> str:
    kept = "excluded" if exclude_history else "ranked"
    return f"full ranking, history items {kept}"


def cmd_evaluate(args: argparse.Namespace) -> None:
    from hymoerec.evaluation.metrics import parse_metric

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        parse_metric(m)
    if args.run_dir is not None:
        _evaluate_run(args, metrics)
    else:
        _evaluate_baseline(args, metrics)


def _evaluate_run(args: argparse.Namespace, metrics: list[str]) -> None:
    from hymoerec.rundir import read_config
    from hymoerec.training.run import evaluate_run, run_penalty

    if args.model is not None or args.dataset is not None:
        raise DataError("give either a run directory or --model and --dataset, not both")
    fixed = sorted(set(_given_data_options(args)) - {"data_dir"})
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise DataError(
            f"{flags}: a run is evaluated on the data it was trained on (kept in the run "
            f"directory); these options apply to `evaluate --model ... --dataset ...`"
        )
    run_dir = Path(args.run_dir)
    report = evaluate_run(
        run_dir,
        args.exclude_history,
        metrics,
        args.max_len,
        args.batch_size,
        args.device,
        args.data_dir,
    )
    config = read_config(run_dir)
    protocol = _protocol(args.exclude_history)
    penalty = run_penalty(run_dir)
    if penalty:
        protocol += f", seen items penalised by {penalty:.4g} (train.seen_penalty)"
    if args.json:
        result = {
            "run": str(run_dir.resolve()),
            "model": config.model,
            "dataset": config.dataset,
            "protocol": protocol,
            "metrics": {split: report[split] for split in ("valid", "test")},
            "seconds": report["seconds"]["total"],
        }
        print(json.dumps(result, indent=2))
        return
    print(f"{args.run_dir}: {protocol}")
    print(_metrics_table(report, metrics))


def _evaluate_baseline(args: argparse.Namespace, metrics: list[str]) -> None:
    from hymoerec.evaluation.baselines import BASELINES
    from hymoerec.evaluation.evaluator import evaluate
    from hymoerec.runtime import resolve_device

    if args.model is None or args.dataset is None:
        raise DataError("evaluate needs a run directory, or --model and --dataset")
    device = resolve_device(args.device or "cpu")
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
            batch_size=args.batch_size or 1024,
            exclude_history=args.exclude_history,
            device=device,
            progress=True,
        )
        summary = result.summary(metrics)
        report[split] = summary
        rows.append([split, *summary.values()])
    protocol = _protocol(args.exclude_history)
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
        f"{args.model} on {source.name}: {protocol}, over {_plural(data.num_items, 'item')}, "
        f"{_plural(data.num_users, 'user')}"
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
        about = f"a history of {_plural(len(history), 'item')}"
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
    import os

    import torch

    from hymoerec.recommend import Recommender
    from hymoerec.serving.server import ServeOptions, bind, serve

    if args.threads < 0:
        raise ValueError(f"--threads {args.threads}: must be 0 (torch's default) or more")
    # every option is checked, and the port bound, before anything says "serving"
    options = ServeOptions(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_connections=args.max_connections,
        keep_alive=args.keep_alive,
        read_timeout=args.read_timeout,
        max_body_bytes=args.max_body_bytes,
        backlog=args.backlog,
        api_key=os.environ.get(args.api_key_env) or None,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    recommender = Recommender.load(args.run_dir, args.device, args.data_dir)
    sock = bind(options)
    key = f", API key from ${args.api_key_env}" if options.api_key else ""
    print(f"serving {recommender.name} on http://{args.host}:{args.port} (docs at /docs{key})")
    serve(recommender, options, sock)


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
        data={k: v for k, v in _given_data_options(args).items() if k != "data_dir"},
    )
    done = [run for run in plan if reproduce.record_path(run, options).is_file()]
    print(
        f"{_plural(len(plan), 'run')} planned, {len(done)} already recorded in {options.results}/"
    )
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

    # one config for the statistics shown and the run trained: the same data options
    overrides = _run_overrides(args)
    overrides["model"] = "hymoerec"
    overrides["dataset"] = args.dataset
    config = load_run_config(None, [], overrides)
    source, data = prepare_dataset(args.dataset, config.data)
    sizes = [[source.name, data.num_users, data.num_items, data.num_interactions]]
    print(_table(["dataset", "users", "items", "interactions"], sizes))
    epochs = args.epochs if args.epochs is not None else DEMO_EPOCHS.get(source.name, 5)
    settings = [f"train.epochs={epochs}", "train.batch_size=32", "train.warmup_steps=100"]
    config = load_run_config(None, settings, overrides)
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / (f"demo-{source.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    print(f"\ntraining HyMoERec for {_plural(epochs, 'epoch')} (a short demo run) ...")
    final = train(config, out, progress=True)
    print(f"\n{final['protocol']}; best epoch {final['best_epoch']} of {final['epochs_run']}")
    print(_metrics_table({"valid": final["valid"], "test": final["test"]}, DEFAULT_METRICS))
    recommender = Recommender.load(out, config.train.device)
    user = data.users.external[0]
    history = recommender.user_history(user)
    print(f"\nuser {user}: {_plural(len(history), 'interaction')}; the last five:")
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
    _add_dataset_options(tr, positional=False)
    _add_compute_options(tr)
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
        help="history length seen by the model (default: the run's; for --model the "
        "dataset's, 200 for MovieLens, 50 otherwise)",
    )
    ev.add_argument(
        "--batch-size", type=int, help="users scored at once (default: the run's; 1024)"
    )
    _add_compute_options(ev)
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
    _add_compute_options(rec, device=False)
    rec.set_defaults(handler=cmd_recommend)

    pl = commands.add_parser("plot", help="training curves of a run as PNG (or SVG, PDF)")
    pl.add_argument("run_dir", help="a run directory written by `hymoerec train`")
    pl.add_argument(
        "--out", help="file to write, its format from its suffix (default RUN_DIR/training.png)"
    )
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
    limits = sv.add_argument_group("limits (docs/serving.md)")
    limits.add_argument(
        "--max-connections", type=int, default=256, help="open connections at once (default 256)"
    )
    limits.add_argument(
        "--keep-alive", type=int, default=5, help="seconds an idle connection stays (default 5)"
    )
    limits.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a client has to send a whole request, head and body (default 10)",
    )
    limits.add_argument(
        "--max-body-bytes", type=int, default=1048576, help="413 above (default 1 MiB)"
    )
    limits.add_argument("--backlog", type=int, default=2048, help="listen backlog (default 2048)")
    limits.add_argument(
        "--api-key-env",
        default="HYMOEREC_API_KEY",
        help="environment variable holding the API key clients send in X-API-Key; unset or "
        "empty: no key (default HYMOEREC_API_KEY)",
    )
    sv.set_defaults(handler=cmd_serve)

    demo = commands.add_parser(
        "demo", help="prepare a dataset, train HyMoERec briefly, show metrics and top-10"
    )
    demo.add_argument("dataset", nargs="?", default="ml-1m", help="ml-1m (default) or ml-100k")
    _add_dataset_options(demo, positional=False)
    _add_compute_options(demo)
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
    _add_dataset_options(rp, positional=False)
    _add_compute_options(rp)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if getattr(args, "computes", False):  # one thread rule for every computing command
            from hymoerec.runtime import configure_threads

            configure_threads(args.threads)
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

