"""Tiny configs of every registered model, small enough for CPU unit tests."""

from __future__ import annotations

from typing import Any

import torch

NUM_ITEMS = 20
TINY_MOE = {"num_experts": 4, "top_k": 2, "router_hidden": 16}
_TRANSFORMER = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 2,
    "inner_size": 64,
    "dropout": 0.0,
    "attn_dropout": 0.0,
    "max_len": 20,
}

# (registry name, options); "sasrec" also appears with the Hybrid MoE FFN
TINY: list[tuple[str, dict[str, Any]]] = [
    ("hymoerec", {"hidden_size": 32, "d_state": 8, "dropout": 0.0, "moe": TINY_MOE}),
    ("mamba4rec", {"hidden_size": 32, "d_state": 8, "dropout": 0.0}),
    ("sasrec", _TRANSFORMER),
    ("sasrec", {**_TRANSFORMER, "ffn": "hymoe", "moe": TINY_MOE}),
    ("bert4rec", {**_TRANSFORMER, "mask_prob": 0.3}),
    ("gru4rec", {"embedding_size": 32, "hidden_size": 32, "dropout": 0.0}),
    ("narm", {"embedding_size": 32, "hidden_size": 32, "dropout": [0.0, 0.0]}),
]
TINY_IDS = ["hymoerec", "mamba4rec", "sasrec", "sasrec-hymoe", "bert4rec", "gru4rec", "narm"]


def right_padded(lengths: list[int], width: int, seed: int = 0) -> torch.Tensor:
    """(B, width) random real items 1..NUM_ITEMS followed by padding 0."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (len(lengths), width), generator=g)
    position = torch.arange(width)
    return torch.where(position < torch.tensor(lengths)[:, None], items, 0)


def count_calls(monkeypatch: Any, owner: Any, attribute: str) -> list[int]:
    """Wrap ``owner.attribute`` so that each call appends to the returned list."""
    calls: list[int] = []
    original = getattr(owner, attribute)
    monkeypatch.setattr(owner, attribute, lambda *a: calls.append(1) or original(*a))
    return calls


def same_model_either_way(switch: Any, calls: list[int]) -> None:
    """A tiny HyMoERec's output and parameter gradients with ``switch(False)`` and
    ``switch(True)`` (context managers) agree, and the ``True`` side made ``calls``."""
    torch.manual_seed(0)
    from hymoerec.models import build_model

    model = build_model("hymoerec", {"hidden_size": 16, "d_state": 4, "dropout": 0.0}, 30)
    items = torch.randint(1, 31, (3, 11))
    results = []
    for on in (False, True):
        model.zero_grad()
        with switch(on):
            hidden = model(items).hidden
        (hidden * torch.linspace(-1, 1, 16)).sum().backward()
        results.append((hidden, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        assert bool(calls) == on, "the kernel was used only with the switch on"
    (plain, plain_grads), (switched, switched_grads) = results
    torch.testing.assert_close(switched, plain, atol=1e-5, rtol=1e-4)
    for a, e in zip(switched_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4)
