"""Sequential recommenders behind one interface (``SequentialModel``) and a registry.

``build_model(name, config, num_items)`` turns a plain options dict (from YAML) into a
model; the dict loads through the one config loader (``hymoerec.schema``), so an unknown
option or a value of the wrong type is rejected with an error naming it by its dotted path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hymoerec.models.base import ModelOutput, RouterStats, SequentialModel
from hymoerec.models.bert4rec import BERT4Rec, BERT4RecConfig
from hymoerec.models.gru4rec import GRU4Rec, GRU4RecConfig
from hymoerec.models.mamba4rec import HyMoERec, HyMoERecConfig, Mamba4Rec, Mamba4RecConfig
from hymoerec.models.moe import HybridMoE, MoEConfig, balance_loss, warmup_scale
from hymoerec.models.narm import NARM, NARMConfig
from hymoerec.models.sasrec import SASRec, SASRecConfig
from hymoerec.schema import from_dict

# name -> (model class, config class); every constructor takes (config, num_items)
MODELS: dict[str, tuple[Callable[[Any, int], SequentialModel], type[Any]]] = {
    "hymoerec": (HyMoERec, HyMoERecConfig),
    "mamba4rec": (Mamba4Rec, Mamba4RecConfig),
    "sasrec": (SASRec, SASRecConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "narm": (NARM, NARMConfig),
}


def _entry(name: str) -> tuple[Callable[[Any, int], SequentialModel], type[Any]]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]


def config_class(name: str) -> type[Any]:
    """The frozen config dataclass of model ``name``."""
    return _entry(name)[1]


def make_config(name: str, config: Mapping[str, Any], where: str = "model_options.") -> Any:
    """Validated config of model ``name`` from a dict; a nested ``moe`` dict becomes a
    ``MoEConfig``. Errors name an option by its path ``where`` + key: by default as a run
    config holds the model's options."""
    return from_dict(config_class(name), config, where)


def build_model(name: str, config: Mapping[str, Any], num_items: int) -> SequentialModel:
    """Model ``name`` for a catalogue of items 1..num_items (0 is padding)."""
    if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    model_cls, _ = _entry(name)
    return model_cls(make_config(name, config), num_items)


__all__ = [
    "MODELS",
    "NARM",
    "BERT4Rec",
    "BERT4RecConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "HyMoERec",
    "HyMoERecConfig",
    "HybridMoE",
    "Mamba4Rec",
    "Mamba4RecConfig",
    "MoEConfig",
    "ModelOutput",
    "NARMConfig",
    "RouterStats",
    "SASRec",
    "SASRecConfig",
    "SequentialModel",
    "balance_loss",
    "build_model",
    "config_class",
    "make_config",
    "warmup_scale",
]
