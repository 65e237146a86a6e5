"""Hostile-client probe of `hymoerec serve` on loopback: bad payloads, huge bodies, idle
connections, one bad request among many, then plain load. A benchmark, not a test: it
prints counts and timings.

It trains its own tiny HyMoERec on the interactions of ML-100K's 12 most popular items (a
12-item catalogue, as in the report that prompted it), starts the real server (uvicorn, in
a subprocess, free port, default options, open-file limit 1,024) and runs:

1. bad payloads (NaN, Infinity, 1e400, surrogates, control characters, bad UTF-8, deep
   nesting, wrong types, k above the catalogue) on one keep-alive connection, each
   followed by a valid request: counts of 4xx / 5xx / resets, largest error body;
2. 80 valid k=5 requests sent together with one k=50: how many valid ones failed;
3. bodies of 12 and 117 MB (and 12 MB chunked): the answer, and the longest /health
   answer time meanwhile (goal < 50 ms);
4. 1,100 idle connections: how many the server keeps, whether a legitimate client is
   served meanwhile, and when the idle ones are closed;
5. 10,000 requests at 8 and 32 clients (``serve_load.drive``): errors, p50/p99, req/s.

    python benchmarks/serve_probe.py [--data-dir DIR] [--server-src DIR]

``--server-src`` runs the server from another checkout's ``src`` (e.g. main's, for
"before" figures); the client side is this one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from serve_load import drive, encode, free_port, read_response, wait_ready

CATALOGUE = 12
FD_LIMIT = 1024  # the server's open-file limit, as on the machine of the report
TIMEOUT = 60.0  # seconds any single probe step may take


def tiny_run(data_dir: Path, root: Path) -> Path:
    """A tiny HyMoERec trained on ML-100K restricted to its most popular items."""
    from hymoerec.config import load_run_config
    from hymoerec.training.run import train

    rows = (data_dir / "ml-100k" / "u.data").read_text().splitlines()
    keep = {i for i, _ in Counter(r.split("\t")[1] for r in rows).most_common(CATALOGUE)}
    (root / "data" / "ml-100k").mkdir(parents=True)
    (root / "data" / "ml-100k" / "u.data").write_text(
        "\n".join(r for r in rows if r.split("\t")[1] in keep) + "\n"
    )
    overrides = ["model_options.hidden_size=16", "model_options.moe.router_hidden=8",
                 "train.epochs=1", "train.max_len=20", "train.batch_size=64", "train.threads=1",
                 f"data.data_dir={root / 'data'}", f"data.cache_dir={root / 'cache'}"]  # fmt: skip
    config = load_run_config(None, overrides, {"model": "hymoerec", "dataset": "ml-100k"})
    train(config, root / "run", progress=False)
    return root / "run"


def raw(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: probe\r\n"
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


class Connection:
    """One keep-alive connection that reconnects after a reset (and counts resets)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.resets = 0

    async def ask(self, request: bytes) -> tuple[int | None, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        try:
            writer.write(request)
            return await asyncio.wait_for(read_response(reader), TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            self.resets += 1
            writer.close()
            self.streams = None
            return None, b""


def bad_bodies() -> list[tuple[str, bytes]]:
    """(name, request) pairs; every one of them should get a 4xx."""
    post = [
        b'{"history":["1"],"k":NaN}', b'{"history":["1"],"k":Infinity}',
        b'{"history":["1"],"k":-Infinity}', b'{"history":["1"],"k":1e400}',
        b'{"history":["1"],"exclude_seen":NaN}', b'{"history":[NaN]}',
        b'{"history":["\\ud800"]}', b'{"user":"\\udfff"}', b'{"history":["1"],"\\ud800":1}',
        b'{"history":["1\\u0000"]}', b'{"user":"1\\u0000"}', b'{"history":["1\\u001b"]}',
        b'{"history":["\xff\xfe"]}', b'{"history":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"history":["1"],"k":1' + b"0" * 5000 + b"}", b'{"history":["1"],"k":"ten"}',
        b'{"history":"1,2"}', b'{"history":[1.5]}', b'{"k":3}', b'{"history":[],"user":1}',
        b'{"history":["1"],"k":50}', b'{"history":["1"],"k":0}', b"[]", b"null", b"",
        b'{"history":["' + b"x" * 500_000 + b'"]}',
        b'{"history":["1"],"k":"' + b"y" * 500_000 + b'"}',
    ]  # fmt: skip
    named = [
        (body[:40].decode("utf-8", "replace"), raw("POST", "/recommend", body)) for body in post
    ]
    for path in ("/items/1%00", "/items/1%0a", "/items/" + "9" * 300):
        named.append((f"GET {path[:40]}", raw("GET", path)))
    return named


async def probe_bad_payloads(port: int) -> None:
    connection = Connection(port)
    good = raw("POST", "/recommend", b'{"history":["50"],"k":3}')
    statuses: Counter[str] = Counter()
    follow_up_failures = 0
    largest = 0
    wrong: dict[str, list[str]] = {"2xx": [], "5xx": []}
    for name, request in bad_bodies():
        status, body = await connection.ask(request)
        kind = "reset" if status is None else f"{status // 100}xx"
        statuses[kind] += 1
        largest = max(largest, len(body))
        wrong.get(kind, []).append(name)
        if (await connection.ask(good))[0] != 200:
            follow_up_failures += 1
    print(f"1. bad payloads tried: {sum(statuses.values())}; answers: "
          f"{', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}; connection resets "
          f"{connection.resets}; valid follow-ups that failed: {follow_up_failures}; largest "
          f"error body: {largest} bytes")  # fmt: skip
    for kind, names in wrong.items():
        if names:
            print(f"   {kind} for: {names}")


async def probe_one_bad_in_a_batch(port: int, histories: list[list[str]]) -> None:
    async def one(history: list[str], k: int) -> int | None:
        return (await Connection(port).ask(raw("POST", "/recommend",
                json.dumps({"history": history, "k": k}).encode())))[0]  # fmt: skip

    tasks = [one(h, 5) for h in histories[:40]] + [one(histories[40], 50)]
    tasks += [one(h, 5) for h in histories[41:81]]
    statuses = await asyncio.gather(*tasks)
    bad = statuses.pop(40)
    failed = sum(s != 200 for s in statuses)
    print(f"2. 80 valid k=5 requests with one k=50 (catalogue {CATALOGUE}): valid ones that "
          f"failed: {failed}; the k=50 request got {bad}")  # fmt: skip


async def probe_big_body(port: int, megabytes: int, chunked: bool = False) -> None:
    stop = asyncio.Event()
    health_ms: list[float] = []

    async def poll_health() -> None:
        connection = Connection(port)
        while not stop.is_set():
            began = time.perf_counter()
            await connection.ask(raw("GET", "/health"))
            health_ms.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.01)

    async def upload() -> tuple[str, float]:
        chunk = b'"1234567",' * 100_000  # 1 MB of history ids
        size = megabytes * len(chunk)
        body_head, body_tail = b'{"history":[', b'"1"]}'
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        framing = "Transfer-Encoding: chunked" if chunked else (
            f"Content-Length: {size + len(body_head) + len(body_tail)}")  # fmt: skip
        writer.write(f"POST /recommend HTTP/1.1\r\nHost: probe\r\nContent-Type: "
                     f"application/json\r\n{framing}\r\n\r\n".encode())  # fmt: skip
        began = time.perf_counter()
        answer = asyncio.ensure_future(read_response(reader))

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

        try:
            writer.write(frame(body_head))
            for _ in range(megabytes):
                if answer.done():
                    break
                writer.write(frame(chunk))
                await writer.drain()
            if not answer.done():
                writer.write(frame(body_tail) + (b"0\r\n\r\n" if chunked else b""))
                await writer.drain()
        except OSError:
            pass
        try:
            status, body = await asyncio.wait_for(answer, TIMEOUT)
            outcome = f"{status} ({len(body)}-byte body)"
        except TimeoutError:
            outcome = f"no answer within {TIMEOUT:.0f} s"
        except (OSError, asyncio.IncompleteReadError):
            outcome = "connection reset without an answer"
        seconds = time.perf_counter() - began
        writer.close()
        return outcome, seconds

    poller = asyncio.ensure_future(poll_health())
    await asyncio.sleep(0.5)
    quiet = max(health_ms)  # the slowest /health with no upload, for comparison
    before = len(health_ms)
    outcome, seconds = await upload()
    await asyncio.sleep(0.2)
    stop.set()
    await poller
    kind = "chunked" if chunked else "with Content-Length"
    during = health_ms[before:]
    print(f"3. {megabytes} MB body {kind}: {outcome} after {seconds:.2f} s; /health: slowest "
          f"{max(during):.1f} ms over the upload (slowest {quiet:.1f} ms in the 0.5 s before), "
          f"{len(during)} answers")  # fmt: skip


async def probe_idle_connections(port: int, count: int, read_timeout: float) -> None:
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused = 0
    for _ in range(count):
        try:
            opened.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5))
        except (OSError, TimeoutError):
            refused += 1
    began = time.perf_counter()
    closed_at: list[float] = []

    async def watch(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            await reader.read()
        closed_at.append(time.perf_counter() - began)

    watchers = [asyncio.ensure_future(watch(reader)) for reader, _ in opened]
    await asyncio.sleep(1.0)
    closed_at_once = len(closed_at)
    legit_began = time.perf_counter()
    status, _ = await Connection(port).ask(raw("GET", "/health"))
    legit_ms = (time.perf_counter() - legit_began) * 1000
    await asyncio.wait(watchers, timeout=read_timeout + 5)
    still_open = sum(not w.done() for w in watchers)
    for w in watchers:
        w.cancel()
    for _, writer in opened:
        writer.close()
    late = sorted(closed_at)[closed_at_once:] or [float("nan")]
    print(f"4. {count} idle connections: {len(opened)} connected, {refused} refused; closed "
          f"at once (over the cap): {closed_at_once}; held by the server: "
          f"{len(opened) - closed_at_once}, closed after {late[0]:.1f}-{late[-1]:.1f} s; "
          f"still open after {read_timeout + 5:.0f} s: {still_open}; a legitimate client "
          f"meanwhile: {status} in {legit_ms:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HYMOEREC_DATA", "data"))
    parser.add_argument("--server-src", help="run the server from this src directory")
    parser.add_argument("--requests", type=int, default=10_000, help="per load level")
    parser.add_argument("--clients", default="8,32")
    parser.add_argument("--idle", type=int, default=1100, help="idle connections to open")
    parser.add_argument("--read-timeout", type=float, default=10.0, help="the server's")
    parser.add_argument("--steps", default="1,2,3,4,5", help="which of the probes to run")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="serve-probe-"))
    run = tiny_run(Path(args.data_dir), root)
    from hymoerec.recommend import Recommender

    recommender = Recommender.load(run, "cpu")
    users = recommender.data.users.external
    histories = [recommender.user_history(str(u))[-recommender.max_len :] for u in users[:200]]
    del recommender

    port = free_port()
    env = os.environ.copy() | {"OMP_NUM_THREADS": "1"}
    if args.server_src:
        env["PYTHONPATH"] = str(Path(args.server_src).resolve())
    command = [sys.executable, "-m", "hymoerec.cli", "serve", str(run), "--port", str(port),
               "--device", "cpu"]  # fmt: skip
    source = args.server_src or "this checkout"
    print(f"server: {' '.join(command[1:])} (src: {source}, open-file limit {FD_LIMIT}); "
          f"{os.cpu_count()} CPU cores shared with the client")  # fmt: skip

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    log = root / "server.log"
    server = subprocess.Popen(command, env=env, preexec_fn=limit_fds, stderr=log.open("wb"))
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        steps = {int(step) for step in args.steps.split(",")}
        if 1 in steps:
            asyncio.run(probe_bad_payloads(port))
        if 2 in steps:
            asyncio.run(probe_one_bad_in_a_batch(port, histories))
        for megabytes, chunked in ((12, False), (117, False), (12, True)) if 3 in steps else ():
            asyncio.run(probe_big_body(port, megabytes, chunked))
        if 4 in steps:
            asyncio.run(probe_idle_connections(port, args.idle, args.read_timeout))
        payloads = [encode(port, {"history": h, "k": 10, "exclude_seen": False}) for h in histories]
        if 5 in steps:
            print("5. load: POST /recommend k=10, one keep-alive connection per client")
            print(f"{'clients':>7} | {'requests':>8} | {'errors':>6} | {'p50 ms':>7} | "
                  f"{'p99 ms':>7} | {'req/s':>7}")  # fmt: skip
        for clients in (int(c) for c in args.clients.split(",")) if 5 in steps else ():
            latencies, errors, wall = asyncio.run(
                drive(port, payloads, clients, args.requests, 300)
            )
            ms = np.array(latencies or [float("nan")]) * 1000
            print(f"{clients:>7} | {len(latencies) + errors:>8} | {errors:>6} | "
                  f"{np.percentile(ms, 50):>7.1f} | {np.percentile(ms, 99):>7.1f} | "
                  f"{len(latencies) / wall:>7.0f}", flush=True)  # fmt: skip
        tracebacks = log.read_text(errors="replace").count("Traceback")
        print(f"server still running: {server.poll() is None}; tracebacks in its log: "
              f"{tracebacks} ({log})")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
