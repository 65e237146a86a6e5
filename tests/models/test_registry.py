import re
from typing import Any

import pytest

from hymoerec.models import (
    MODELS,
    HyMoERec,
    Mamba4Rec,
    Mamba4RecConfig,
    MoEConfig,
    SASRec,
    build_model,
    config_class,
    make_config,
)
from hymoerec.models.layers import PointWiseFFN
from hymoerec.models.moe import HybridMoE
from hymoerec.schema import ConfigError
from tests.models.tiny import NUM_ITEMS, TINY, TINY_IDS


def test_registry_names() -> None:
    assert set(MODELS) == {"hymoerec", "mamba4rec", "sasrec", "bert4rec", "gru4rec", "narm"}


@pytest.mark.parametrize(("name", "options"), TINY, ids=TINY_IDS)
def test_build_model_with_tiny_options(name: str, options: dict[str, Any]) -> None:
    model = build_model(name, options, NUM_ITEMS)
    assert model.num_items == NUM_ITEMS
    assert isinstance(model.config, config_class(name))
    assert model.item_weights().shape[0] == NUM_ITEMS + 1


def test_defaults_build_with_an_empty_dict() -> None:
    for name in MODELS:
        assert build_model(name, {}, NUM_ITEMS).config == config_class(name)()


def test_hymoerec_is_mamba4rec_with_the_hybrid_moe_ffn() -> None:
    hymoerec = build_model("hymoerec", {}, NUM_ITEMS)
    mamba4rec = build_model("mamba4rec", {}, NUM_ITEMS)
    assert isinstance(hymoerec, HyMoERec) and isinstance(hymoerec, Mamba4Rec)
    assert type(mamba4rec) is Mamba4Rec
    assert sum(isinstance(m, HybridMoE) for m in hymoerec.modules()) == 1
    assert not any(isinstance(m, HybridMoE) for m in mamba4rec.modules())
    assert any(isinstance(m, PointWiseFFN) for m in mamba4rec.modules())
    config = make_config("hymoerec", {})
    assert config.ffn == "hymoe" and config.moe == MoEConfig()


def test_sasrec_takes_the_hybrid_moe() -> None:
    model = build_model("sasrec", {"ffn": "hymoe", "moe": {"num_experts": 3}}, NUM_ITEMS)
    assert isinstance(model, SASRec)
    moes = [m for m in model.modules() if isinstance(m, HybridMoE)]
    assert len(moes) == model.config.num_layers and moes[0].config.num_experts == 3


def test_nested_moe_dict_becomes_moe_config() -> None:
    config = make_config("mamba4rec", {"ffn": "hymoe", "moe": {"top_k": 1}})
    assert isinstance(config, Mamba4RecConfig) and config.moe == MoEConfig(top_k=1)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("sasrec", {"hiden_size": 64}, "model_options.hiden_size"),
        ("hymoerec", {"moe": {"num_expert": 4}}, "model_options.moe.num_expert"),
        ("gru4rec", {"moe": {}}, "model_options.moe"),
        ("narm", {"max_len": 50}, "model_options.max_len"),
    ],
)
def test_unknown_options_are_rejected_by_name(
    name: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"unknown option {re.escape(message)}; known: "):
        build_model(name, options, NUM_ITEMS)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mamba4rec", {"hidden_size": 0}, "hidden_size"),
        ("mamba4rec", {"d_state": "32"}, "d_state"),
        ("mamba4rec", {"num_layers": True}, "num_layers"),
        ("mamba4rec", {"ffn": "moe"}, "ffn"),
        ("hymoerec", {"ffn": "dense"}, "ffn"),
        ("hymoerec", {"moe": {"top_k": 5}}, "top_k"),
        ("hymoerec", {"moe": {"fusion": "average"}}, "fusion"),
        ("sasrec", {"dropout": 1.5}, "dropout"),
        ("sasrec", {"num_heads": 3}, "num_heads"),
        ("bert4rec", {"mask_prob": 0.0}, "mask_prob"),
        ("gru4rec", {"hidden_size": -1}, "hidden_size"),
        ("narm", {"dropout": [0.25]}, "dropout"),
        ("narm", {"dropout": [0.25, 1.0]}, "dropout"),
    ],
)
def test_bad_values_are_rejected_by_name(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(name, options, NUM_ITEMS)


def test_unknown_model_and_bad_catalogue_size() -> None:
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        build_model("transformer", {}, NUM_ITEMS)
    with pytest.raises(ValueError, match="num_items"):
        build_model("sasrec", {}, 0)


def test_configs_are_frozen() -> None:
    config = make_config("sasrec", {})
    with pytest.raises(AttributeError):
        config.hidden_size = 8
