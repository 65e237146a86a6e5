"""Fixtures of the serving tests: a 12-item catalogue and a real uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from hymoerec.recommend import Recommender
from hymoerec.serving.server import ServeOptions, bind, uvicorn_config
from tests.conftest import TINY

SMALL_CATALOGUE = 12


@pytest.fixture(scope="session")
def small_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HyMoERec trained on the interactions of ML-100K's 12 most popular items."""
    from hymoerec.config import load_run_config
    from hymoerec.training.run import train

    root = tmp_path_factory.mktemp("small-run")
    rows = (shared_data / "ml-100k" / "u.data").read_text().splitlines()
    popular = Counter(row.split("\t")[1] for row in rows).most_common(SMALL_CATALOGUE)
    keep = {item for item, _ in popular}
    (root / "data" / "ml-100k").mkdir(parents=True)
    (root / "data" / "ml-100k" / "u.data").write_text(
        "\n".join(row for row in rows if row.split("\t")[1] in keep) + "\n"
    )
    config = load_run_config(
        None,
        [*TINY, "train.epochs=1", f"data.data_dir={root / 'data'}", f"data.cache_dir={root / 'c'}"],
        {"model": "hymoerec", "dataset": "ml-100k"},
    )
    train(config, root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def small_recommender(small_run: Path) -> Recommender:
    torch.set_num_threads(1)
    recommender = Recommender.load(small_run, device="cpu")
    assert recommender.num_items == SMALL_CATALOGUE
    return recommender


@contextmanager
def live_server(recommender: Recommender, options: ServeOptions) -> Iterator[str]:
    """``hymoerec serve``'s server (uvicorn, the guarded protocol) in a thread; yields its URL."""
    import uvicorn

    sock = bind(options)
    server = uvicorn.Server(uvicorn_config(recommender, options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://{options.host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
