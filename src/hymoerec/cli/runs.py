"""What a finished run directory offers: ``hymoerec recommend`` (top-k lists), ``hymoerec
plot`` (its training curves) and ``hymoerec serve`` (an HTTP service)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hymoerec.cli.options import Commands, add_compute_options, require
from hymoerec.cli.tables import plural, recommendation_table
from hymoerec.data.errors import DataError


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
        about = f"a history of {plural(len(history), 'item')}"
    if args.json:
        report = {"unknown": result.unknown, "fallback": result.fallback, "items": result.rows()}
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    seen = "seen items included" if args.include_seen else "seen items excluded"
    print(f"top {args.k} for {about} ({recommender.name}, {seen})")
    print(recommendation_table(result))


def cmd_plot(args: argparse.Namespace) -> None:
    require("matplotlib", "plot")
    from hymoerec.plots import plot_training

    out = plot_training(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"training curves: {out}")


def cmd_serve(args: argparse.Namespace) -> None:
    require("fastapi", "serve")
    require("uvicorn", "serve")
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


def add_parsers(commands: Commands) -> None:
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
    add_compute_options(rec, device=False)
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
