"""The one training loop: full-softmax CE at every position, validation on NDCG@10 after
each epoch, early stopping, best weights restored at the end. Under ``torchrun`` the same
loop runs data-parallel (``training/distributed.py``): rank 0 validates and decides.
Given a checkpoint path, the loop saves its whole state after every epoch and, when the
file exists, continues from it exactly where it stopped (``training/checkpoint.py``)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from hymoerec import runtime
from hymoerec.config import TrainConfig
from hymoerec.data.batches import right_padded
from hymoerec.data.interactions import PAD
from hymoerec.data.protocol import SequenceData
from hymoerec.models.base import SequentialModel
from hymoerec.training.batches import BatchSampler, TrainBatch
from hymoerec.training.checkpoint import (
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from hymoerec.training.distributed import World, broadcast_flag, init_process_group
from hymoerec.training.loss import LossFn, make_loss, train_item_counts
from hymoerec.training.schedule import fusion_scale, lr_factor
from hymoerec.training.validation import numerics, validate_rankings

SELECTION_METRIC = "NDCG@10"
log = logging.getLogger(__name__)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(name: str, world: World | None = None) -> torch.device:
    """The configured device; in a data-parallel run on GPUs, this process's GPU."""
    local_rank = world.local_rank if world is not None and world.distributed else None
    return runtime.resolve_device(name, local_rank)


@dataclass
class EpochRecord:
    epoch: int
    step: int
    loss: float
    aux_loss: float
    seconds: float
    targets_per_second: float
    valid: dict[str, float]
    elapsed: float  # wall seconds since training began, validation included
    alpha: list[float] = field(default_factory=list)
    expert_share: list[list[float]] = field(default_factory=list)  # per MoE layer
    valid_history_excluded: dict[str, float] = field(default_factory=dict)  # when asked for


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[EpochRecord]
    train_seconds: float
    stopped: str  # why training ended


def train_step(
    model: SequentialModel,
    batch: TrainBatch,
    scale: float,
    config: TrainConfig,
    device: torch.device,
    loss_fn: LossFn,
    network: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one batch: (total to back-propagate, CE, auxiliary). ``network`` runs the
    forward pass when it is not ``model`` itself (its DistributedDataParallel wrapper)."""
    items, targets = batch.items.to(device), batch.targets.to(device)
    with numerics(config, device):
        output = (network or model)(items, alpha_scale=scale)
        hidden, targets = with_targets(output.hidden, targets)
        ce = loss_fn(hidden, model.item_weights(), targets)
    total = batch.target_weight * ce + batch.sequence_weight * output.aux_loss
    return total, ce, output.aux_loss


def with_targets(hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states (T, D) and targets (T,) of the positions that have a target, in
    order: ``hidden[targets != PAD]`` by ``index_select``, whose gradient is an
    ``index_add_`` where a boolean mask's is an accumulating ``index_put_``, the slower
    of the two on CPU (``python benchmarks/step_profile.py --experts``)."""
    real = (targets != PAD).view(-1).nonzero().squeeze(1)
    rows = hidden.reshape(-1, hidden.size(-1)).index_select(0, real)
    return rows, targets.reshape(-1).index_select(0, real)


def adamw(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW fused into one kernel over all parameters where torch has one for the device
    (CPU since torch 2.4) instead of a few small operators per parameter tensor."""
    lr, decay = config.lr, config.weight_decay
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay, fused=True)
    except RuntimeError:  # no fused kernel for these parameters' device in this torch
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay)


@dataclass
class EpochStats:
    steps: int
    loss: float  # mean CE over the epoch's batches
    aux_loss: float
    targets: int
    seconds: float


class Trainer:
    """Optimizer, schedule and batch order of one run; ``run_epoch`` trains one epoch."""

    def __init__(
        self,
        model: SequentialModel,
        data: SequenceData,
        config: TrainConfig,
        max_len: int,
        world: World | None = None,
    ) -> None:
        self.rng = seed_everything(config.seed)
        runtime.configure_threads(config.threads)
        self.world = world or World()
        self.device = resolve_device(config.device, self.world)
        config = dataclasses.replace(config, bf16=runtime.resolve_bf16(config.bf16, self.device))
        self.model = model.to(self.device)
        self.network: nn.Module = self.model
        if self.world.distributed:
            init_process_group(self.world, self.device)
            # routed experts that receive no token on a rank get no gradient there; DDP
            # must then look for unused parameters instead of waiting for them
            self.network = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.loss_fn = make_loss(config, train_item_counts(data))
        self.config = config
        self.sampler = BatchSampler(
            data,
            max_len,
            config.batch_size,
            model.bidirectional,
            config.bucket,
            config.window_stride,
        )
        self.optimizer = adamw(model, config)
        total = config.epochs * len(self.sampler)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(lr_factor, config.warmup_steps, total, config.schedule)
        )
        self.step = 0  # optimizer steps taken: t in the fusion warm-up min(1, t / T_warmup)

    def state_dict(self) -> dict[str, Any]:
        """What the next epoch depends on: weights, optimizer moments, schedule position,
        step and every random stream; restoring it continues the run bit for bit."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "step": self.step,
            "rng": rng_states(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = state["step"]
        restore_rng_states(self.rng, state["rng"])

    def train_batch(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on ``batch``; returns its (CE, auxiliary) losses."""
        self.model.train()
        scale = fusion_scale(self.model, self.step)
        loss, ce, aux = train_step(
            self.model, batch, scale, self.config, self.device, self.loss_fn, self.network
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        return ce, aux

    def run_epoch(self, label: str = "", progress: bool = False) -> EpochStats:
        model = self.model
        mask_token = getattr(model, "mask_token", 0)
        mask_prob = getattr(model.config, "mask_prob", 0.0) if model.bidirectional else 0.0
        start = time.perf_counter()
        total_loss = total_aux = 0.0
        targets = steps = 0
        rank, world = self.world.rank, self.world.size
        bar = tqdm(
            self.sampler.epoch(self.rng, mask_token, mask_prob, rank, world),
            total=len(self.sampler),
            desc=label,
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for batch in bar:
            ce, aux = self.train_batch(batch)
            steps += 1
            # weighted as the gradients are: summed over ranks, the global batch's means
            total_loss += ce.item() * batch.target_weight / world
            total_aux += float(aux.detach()) * batch.sequence_weight / world
            targets += batch.num_targets if batch.target_weight else 0
            rate = targets / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{ce.item():.3f}", targets_s=f"{rate:,.0f}")
        if self.world.distributed:
            totals = torch.tensor(
                [total_loss, total_aux, targets], dtype=torch.float64, device=self.device
            )
            dist.all_reduce(totals)
            total_loss, total_aux, count = totals.tolist()
            targets = int(count)
        seconds = time.perf_counter() - start
        return EpochStats(steps, total_loss / steps, total_aux / steps, targets, seconds)


def fit(
    model: SequentialModel,
    data: SequenceData,
    config: TrainConfig,
    max_len: int,
    on_epoch: Callable[[EpochRecord, SequentialModel], None] | None = None,
    progress: bool = True,
    world: World | None = None,
    checkpoint: Path | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the best validation weights.

    In a data-parallel run only rank 0 validates, calls ``on_epoch`` and returns a
    history; it tells the other ranks when to stop, and they return an empty result.

    With ``checkpoint``, the state after every epoch is saved there; if the file already
    exists, training continues from it (``on_epoch`` is called for the new epochs only)
    and ends with the weights and metrics of a run that was never interrupted."""
    world = world or World()
    trainer = Trainer(model, data, config, max_len, world)
    device, config = trainer.device, trainer.config  # bf16 decided
    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    best_valid: dict[str, float] = {}
    history: list[EpochRecord] = []
    stale, stopped, first, elapsed = 0, "epochs", 1, 0.0
    if checkpoint is not None and checkpoint.is_file():
        saved = load_checkpoint(checkpoint)
        trainer.load_state_dict(saved["trainer"])
        best_score, best_epoch, best_state = saved["best_score"], saved["best_epoch"], saved["best"]
        best_valid, stale, stopped = saved["best_valid"], saved["stale"], saved["stopped"]
        history = [EpochRecord(**record) for record in saved["history"]]
        first, elapsed = saved["epoch"] + 1, saved["elapsed"]
        log.info("resuming after epoch %d from %s", saved["epoch"], checkpoint)
    began = time.perf_counter() - elapsed  # the time budget counts every earlier attempt
    for epoch in range(first, config.epochs + 1) if stopped == "epochs" else ():
        stats = trainer.run_epoch(f"epoch {epoch}", progress and world.is_main)
        if not world.is_main:
            if broadcast_flag(False, world):
                break
            continue
        rankings = (False, True) if config.valid_history_excluded else (False,)
        valid, *rest = (
            result.summary()
            for result in validate_rankings(model, data, "valid", max_len, config, device, rankings)
        )
        excluded = rest[0] if rest else {}
        scale = fusion_scale(model, trainer.step)
        record = EpochRecord(
            epoch=epoch,
            step=trainer.step,
            loss=stats.loss,
            aux_loss=stats.aux_loss,
            seconds=stats.seconds,
            targets_per_second=stats.targets / stats.seconds,
            valid=valid,
            elapsed=time.perf_counter() - began,
            valid_history_excluded=excluded,
            **_router_summary(model, data, max_len, device, scale),
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record, model)
        log.info(
            "epoch %d: loss %.4f  valid NDCG@10 %.4f  HR@10 %.4f  %.1f s, %s targets/s",
            epoch,
            record.loss,
            valid[SELECTION_METRIC],
            valid["HR@10"],
            stats.seconds,
            f"{record.targets_per_second:,.0f}",
        )
        if valid[SELECTION_METRIC] > best_score:
            best_score, best_epoch, best_valid = valid[SELECTION_METRIC], epoch, valid
            best_state = copy.deepcopy(model.state_dict())
            stale = 0
        else:
            stale += 1
            if stale >= config.patience:
                epochs = "epoch" if config.patience == 1 else "epochs"
                stopped = f"no validation improvement for {config.patience} {epochs}"
        over_time = time.perf_counter() - began > 60 * config.max_minutes
        if stopped == "epochs" and config.max_minutes and over_time:
            stopped = f"time budget of {config.max_minutes} minutes"
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "epoch": epoch,
                    "trainer": trainer.state_dict(),
                    "best": best_state,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "best_valid": best_valid,
                    "stale": stale,
                    "stopped": stopped,
                    "history": [asdict(record) for record in history],
                    "elapsed": time.perf_counter() - began,
                },
            )
        if broadcast_flag(stopped != "epochs", world):
            break
    if not world.is_main:
        return FitResult(0, {}, [], time.perf_counter() - began, "rank 0 decides")
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best_valid, history, time.perf_counter() - began, stopped)


@torch.no_grad()
def _router_summary(
    model: SequentialModel,
    data: SequenceData,
    max_len: int,
    device: torch.device,
    scale: float,
    sample: int = 512,
) -> dict[str, list]:
    """Fusion weights and the share of tokens each expert received, on a sample of users."""
    alphas = [float(a) for a in getattr(model, "fusion_alphas", lambda s: [])(scale)]
    model.eval()
    part = data.split("valid")
    users = np.arange(min(sample, data.num_users))
    items, _ = right_padded(part.items, part.starts[users], part.ends[users], max_len)
    tokens = torch.from_numpy(items).to(device)
    output = model(tokens, alpha_scale=scale)
    real = tokens != PAD
    shares = []
    for layer in output.router:
        chosen = (layer.gates > 0)[real].float()  # (T, E)
        shares.append((chosen.sum(0) / chosen.sum()).tolist())
    return {"alpha": alphas, "expert_share": shares}
