import os
from pathlib import Path

import pytest

# `make test` names the data folder (HYMOEREC_DATA); a bare pytest looks beside the checkout
NAMED = bool(os.environ.get("HYMOEREC_DATA"))
BESIDE = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_DATA = Path(os.environ.get("HYMOEREC_DATA") or BESIDE).resolve()


def shared_path(relative: str = "") -> Path:
    """A path inside the shared data folder. Where it is absent, the test fails if the folder
    was named (a run that was meant to test the real data must not pass without it) and is
    skipped otherwise."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"shared data {path} is absent"
        if NAMED:
            pytest.fail(f"{message} (HYMOEREC_DATA={os.environ['HYMOEREC_DATA']})")
        pytest.skip(f"{message} (set HYMOEREC_DATA to its folder)")
    return path


# A HyMoERec small enough to train on ML-100K in seconds
TINY = [
    "model_options.hidden_size=16",
    "model_options.moe.router_hidden=8",
    "train.epochs=2",
    "train.max_len=20",
    "train.batch_size=64",
    "train.threads=1",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HyMoERec trained on the real ML-100K, with a small u.item beside it so the
    run carries item metadata (the shared copy of ML-100K has no u.item)."""
    from hymoerec.config import load_run_config
    from hymoerec.training.run import train

    root = tmp_path_factory.mktemp("tiny-run")
    data = root / "data" / "ml-100k"
    data.mkdir(parents=True)
    (data / "u.data").symlink_to(shared_data / "ml-100k" / "u.data")
    flags = "|".join(["0"] * 19)
    (data / "u.item").write_text(
        f"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1{flags[11:]}\n"
        f"50|Star Wars (1977)|01-Jan-1977||http://x|0|1|1{flags[5:]}\n",
        encoding="latin-1",
    )
    config = load_run_config(
        None,
        [
            *TINY,
            f"data.data_dir={root / 'data'}",
            f"data.cache_dir={root / 'cache'}",
        ],
        {"model": "hymoerec", "dataset": "ml-100k"},
    )
    train(config, root / "run", progress=False)
    return root / "run"
