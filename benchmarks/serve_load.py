"""Load benchmark of `hymoerec serve` on loopback: p50 / p99 latency and throughput.

Starts the service on a free port in a subprocess, then drives ``POST /recommend`` from
a small asyncio HTTP/1.1 client with 1, 8 and 64 concurrent clients (one keep-alive
connection each), each sending requests back to back. Histories are real: the most
recent items (up to the model's ``max_len``) of random users of the run's dataset. Each
level is bounded in requests and in seconds.

    python benchmarks/serve_load.py RUN_DIR [--clients 1,8,64] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from hymoerec.recommend import Recommender


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the service did not answer {url}/health within {seconds} s")


def encode(port: int, payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 answer with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bool:
    """One request on a keep-alive connection; True when the answer is 200 with 10 items."""
    writer.write(request)
    status, body = await read_response(reader)
    return status == 200 and len(json.loads(body)["items"]) == 10


async def drive(
    port: int, requests_bytes: list[bytes], clients: int, requests: int, seconds: float
) -> tuple[list[float], int, float]:
    """(latencies in s of successful requests, errors, wall seconds).

    A minimal HTTP/1.1 client on raw asyncio streams, one keep-alive connection per
    client: it costs a small fraction of a millisecond of CPU per request, so on a
    machine shared by client and server the figures describe the server.
    """
    latencies: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def client() -> None:
        nonlocal errors, sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while sent < requests and time.perf_counter() < deadline:
                request = requests_bytes[sent % len(requests_bytes)]
                sent += 1
                began = time.perf_counter()
                try:
                    ok = await exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--clients", default="1,8,64", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=2000, help="requests per level (max)")
    parser.add_argument("--seconds", type=float, default=30, help="time per level (max)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests first")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--data-dir", help="for runs without a stored dataset")
    args = parser.parse_args()

    recommender = Recommender.load(args.run_dir, "cpu", args.data_dir)
    rng = np.random.default_rng(0)
    port = free_port()
    histories = [
        recommender.user_history(user)[-recommender.max_len :]
        for user in rng.choice(recommender.data.users.external, size=1000)
    ]
    payloads = [encode(port, {"history": history, "k": 10}) for history in histories]
    lengths = [len(history) for history in histories]
    del recommender

    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "hymoerec.cli", "serve", str(args.run_dir), "--port",
               str(port), "--device", "cpu", "--max-batch", str(args.max_batch)]  # fmt: skip
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    server = subprocess.Popen(command, env=os.environ.copy())
    try:
        wait_ready(url, server)
        asyncio.run(drive(port, payloads, 8, args.warmup, 60))
        print(
            f"{args.run_dir}: POST /recommend k=10, real histories of "
            f"{min(lengths)}-{max(lengths)} items (mean {np.mean(lengths):.0f}), "
            f"{os.cpu_count()} CPU cores shared by server and client"
        )
        print(f"{'clients':>7} | {'requests':>8} | {'errors':>6} | {'p50 ms':>7} | "
              f"{'p99 ms':>7} | {'req/s':>7} | {'client CPU ms/req':>17}")  # fmt: skip
        for clients in (int(c) for c in args.clients.split(",")):
            cpu = time.process_time()
            latencies, errors, wall = asyncio.run(
                drive(port, payloads, clients, args.requests, args.seconds)
            )
            cpu = time.process_time() - cpu
            ms = np.array(latencies) * 1000
            done = len(latencies) + errors
            print(
                f"{clients:>7} | {done:>8} | {errors:>6} | {np.percentile(ms, 50):>7.1f} | "
                f"{np.percentile(ms, 99):>7.1f} | {len(latencies) / wall:>7.0f} | "
                f"{cpu / max(1, len(latencies)) * 1000:>17.2f}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
