"""Data-parallel training on two CPU processes (gloo on loopback) against one process."""

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from hymoerec.config import TrainConfig
from hymoerec.data.interactions import Interactions
from hymoerec.data.protocol import ProtocolConfig, SequenceData, apply_protocol
from hymoerec.models import build_model
from hymoerec.training.batches import BatchSampler
from hymoerec.training.distributed import World, shutdown
from hymoerec.training.loop import Trainer, seed_everything
from hymoerec.training.loss import SampledSoftmaxCE
from tests.models.tiny import TINY

MAX_LEN = 12
WORLD = 2


def synthetic(num_users: int = 50) -> SequenceData:
    """50 users with histories of 4..40 items: windows of very different lengths, and a
    causal window count that leaves the last batch of 8 with a single row."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for user in range(num_users):
        length = int(rng.integers(4, 41))
        users += [f"u{user}"] * length
        items += rng.integers(1, 31, length).astype(str).tolist()
    log = Interactions(np.array(users), np.array(items), np.arange(len(users)))
    return apply_protocol(log, ProtocolConfig(user_core=3, item_core=1))


def train_config(**changes: object) -> TrainConfig:
    # float32: the comparison is of summation orders, which bf16 rounding would swamp
    options: dict = {"batch_size": 8, "lr": 0.01, "threads": 1, "seed": 3, "bucket": 2}
    options["bf16"] = False
    return TrainConfig(**(options | changes))


def trained(world: World, config: TrainConfig, model_name: str, epochs: int) -> dict:
    data = synthetic()
    options = dict(next(o for name, o in TINY if name == model_name))
    if "max_len" in options:
        options["max_len"] = MAX_LEN
    seed_everything(config.seed)
    model = build_model(model_name, options, data.num_items)
    trainer = Trainer(model, data, config, MAX_LEN, world)
    # One draw of negatives for a whole batch, so that every process draws what one
    # process draws (the same seed); per-block draws follow how the batch is split.
    per_draw = SampledSoftmaxCE.TARGETS_PER_DRAW
    SampledSoftmaxCE.TARGETS_PER_DRAW = 10_000
    try:
        for _ in range(epochs):
            trainer.run_epoch()
    finally:
        SampledSoftmaxCE.TARGETS_PER_DRAW = per_draw
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, out: str, config: TrainConfig, model_name: str) -> None:
    state = trained(World(rank, WORLD, rank), config, model_name, epochs=2)
    if rank == 0:
        torch.save(state, out)
    shutdown(World(rank, WORLD, rank))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("model_name", "loss"),
    [("hymoerec", "chunked_ce"), ("hymoerec", "sampled_softmax"), ("bert4rec", "ce")],
)
def test_two_processes_train_like_one_with_the_same_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_name: str, loss: str
) -> None:
    data = synthetic()
    masked = model_name == "bert4rec"
    windows = len(BatchSampler(data, MAX_LEN, 8, masked).starts)
    assert windows % 8 < WORLD or masked  # the last batch leaves rank 1 without a row
    config = train_config(loss=loss, negatives=16)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, (str(out), config, model_name), nprocs=WORLD, join=True)
    parallel = torch.load(out)
    single = trained(World(), config, model_name, epochs=2)
    initial = trained(World(), config, model_name, epochs=0)
    assert single.keys() == parallel.keys()
    moved = 0
    for name, value in single.items():
        # Summation order differs between the all-reduce and one process; Adam divides
        # by the gradient's own scale, which turns that noise into up to ~1e-4 on weights
        # whose true gradient is ~0 (attention key biases), against moves of ~0.1.
        torch.testing.assert_close(parallel[name], value, rtol=1e-3, atol=1e-3, msg=name)
        moved += int(not torch.equal(value, initial[name]))
    assert moved > len(single) // 2  # training did change the weights


def test_shards_partition_each_global_batch() -> None:
    data = synthetic()
    single = BatchSampler(data, MAX_LEN, 8, masked=False, bucket=2)
    whole = list(single.epoch(np.random.default_rng(5)))
    shards = [list(single.epoch(np.random.default_rng(5), 0, 0.0, r, 3)) for r in range(3)]
    assert all(len(s) == len(whole) for s in shards)
    for step, batch in enumerate(whole):
        parts = [s[step] for s in shards]
        weights = [p.target_weight for p in parts]
        assert sum(weights) == pytest.approx(3.0)  # averaged by DDP: the global mean
        assert sum(p.sequence_weight for p in parts) == pytest.approx(3.0)
        rows = sorted(
            tuple(row[row != 0].tolist()) for p in parts if p.target_weight for row in p.items
        )
        assert rows == sorted(tuple(row[row != 0].tolist()) for row in batch.items)
