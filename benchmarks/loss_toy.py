"""A synthetic next-item task on which a training loss is checked in a minute.

Each of N items has 5 successors, drawn once with a Zipf-like popularity; a training
example is (item, one of its successors). The model is the smallest sequential
recommender: the current item's input embedding through a two-layer MLP and a
LayerNorm, scored against the item table (the same table, or a separate output one).
A loss that learns recovers the successors (recall@10 near 1); one that only learns
popularity stays at the recall of the 10 most popular items.

    python benchmarks/loss_toy.py                 # every loss, tied and untied tables
    python benchmarks/loss_toy.py --steps 3000    # longer training

It isolates the loss from data, windows and model: gBCE without its prior shift
(``GBCE(..., prior_shift=False)``) stays at popularity here with a tied table, as it did
on ML-100K and ML-1M.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from hymoerec.training.loss import GBCE, SampledSoftmaxCE, chunked_softmax_ce

SUCCESSORS = 5
TOP = 10


@dataclass(frozen=True)
class Task:
    successors: np.ndarray  # (N + 1, SUCCESSORS) item ids 1..N; row 0 unused
    popularity: np.ndarray  # (N + 1,) sampling weights of the successors; 0 for padding

    @property
    def num_items(self) -> int:
        return len(self.popularity) - 1


def make_task(num_items: int, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_items + 1) ** 0.8
    weights /= weights.sum()
    ids = np.arange(1, num_items + 1)
    successors = np.stack(
        [rng.choice(ids, SUCCESSORS, replace=False, p=weights) for _ in range(num_items + 1)]
    )
    counts = np.bincount(successors[1:].ravel(), minlength=num_items + 1).astype(np.float64)
    return Task(successors, counts)


def losses(task: Task, negatives: int) -> dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]]:
    n = task.num_items
    return {
        "ce": chunked_softmax_ce,
        "sampled_softmax": SampledSoftmaxCE(task.popularity, negatives),
        "gbce": GBCE(n, negatives, 0.75),
        "gbce_no_prior_shift": GBCE(n, negatives, 0.75, prior_shift=False),
    }


def recall(task: Task, tied: bool, loss: Callable, steps: int, batch: int, dim: int) -> float:
    """Train the toy model with ``loss``; recall@10 of each item's successors."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    n = task.num_items
    inputs = nn.Embedding(n + 1, dim)
    nn.init.normal_(inputs.weight, 0.0, 0.02)  # the models' init (RecBole's)
    outputs = inputs if tied else nn.Embedding(n + 1, dim)
    nn.init.normal_(outputs.weight, 0.0, 0.02)
    body = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim))
    modules = nn.ModuleList([inputs, body] + ([] if tied else [outputs]))
    optimizer = torch.optim.Adam(modules.parameters(), lr=1e-3)
    for _ in range(steps):
        current = rng.integers(1, n + 1, batch)
        following = task.successors[current, rng.integers(0, SUCCESSORS, batch)]
        hidden = body(inputs(torch.from_numpy(current)))  # (B, D)
        value = loss(hidden, outputs.weight, torch.from_numpy(following))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        scores = body(inputs.weight[1:]) @ outputs.weight.T  # (N, N + 1)
        scores[:, 0] = -torch.inf
        top = scores.topk(TOP, dim=1).indices.numpy()
    return hit_share(task.successors[1:], top)


def hit_share(truth: np.ndarray, top: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(p)) / len(t) for t, p in zip(truth, top, strict=True)]))


def popularity_recall(task: Task) -> float:
    popular = np.argsort(-task.popularity[1:], kind="stable")[:TOP] + 1
    return hit_share(task.successors[1:], np.tile(popular, (task.num_items, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = make_task(args.items)
    print(f"{args.items} items, {args.negatives} negatives, {args.steps} steps of {args.batch}")
    print(f"recall@{TOP} of ranking by popularity: {popularity_recall(task):.3f}\n")
    print("| loss | tied table | separate output table |\n|---|---|---|")
    for name, loss in losses(task, args.negatives).items():
        cells = [
            recall(task, tied, loss, args.steps, args.batch, args.dim) for tied in (True, False)
        ]
        print(f"| {name} | {cells[0]:.3f} | {cells[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
