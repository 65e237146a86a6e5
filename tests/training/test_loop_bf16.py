"""train.bf16: one training step of every causal backbone under the bf16 autocast."""

import copy
from typing import Any

import pytest
import torch

from hymoerec.config import TrainConfig
from hymoerec.models import build_model
from hymoerec.training.batches import TrainBatch
from hymoerec.training.loop import train_step
from hymoerec.training.loss import chunked_softmax_ce
from tests.models.tiny import NUM_ITEMS, TINY, TINY_IDS, right_padded

CAUSAL = [(name, options) for name, options in TINY if name != "bert4rec"]
CAUSAL_IDS = [i for (name, _), i in zip(TINY, TINY_IDS, strict=True) if name != "bert4rec"]


@pytest.mark.parametrize(("name", "options"), CAUSAL, ids=CAUSAL_IDS)
def test_a_bf16_step_is_the_float32_step_up_to_bf16_rounding(
    name: str, options: dict[str, Any]
) -> None:
    torch.manual_seed(0)
    model = build_model(name, options, NUM_ITEMS)
    twin = copy.deepcopy(model)
    items = right_padded([9, 6, 4, 9], 10)
    targets = torch.where(items != 0, torch.randint(1, NUM_ITEMS + 1, items.shape), 0)
    batch = TrainBatch(items[:, :9], targets[:, :9])
    grads = []
    for net, bf16 in ((model, False), (twin, True)):
        config = TrainConfig(bf16=bf16)
        total, ce, _ = train_step(net, batch, 1.0, config, torch.device("cpu"), chunked_softmax_ce)
        assert total.dtype == torch.float32
        total.backward()
        grads.append((float(ce.detach()), net.item_weights().grad.clone()))  # type: ignore[union-attr]
    (ce32, grad32), (ce16, grad16) = grads
    assert ce16 == pytest.approx(ce32, rel=2e-2)
    assert torch.isfinite(grad16).all()
    assert float((grad16 - grad32).norm() / grad32.norm()) < 0.1
