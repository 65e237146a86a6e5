"""The one config loader: a plain dict (from YAML) into a frozen dataclass.

Run configs (``hymoerec.config``) and model configs (``hymoerec.models``) both load through
``from_dict``, so every config rejects unknown keys and mistyped values alike, with an error
naming the option by its full dotted path. It imports nothing of hymoerec, so the lowest
layers (data, models) can use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """An option is unknown or has a bad value; the message names it."""


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``, recursing into nested dataclasses.

    ``where`` is the dotted path of ``values`` in its file (``"train."``, ``"model_options."``);
    unknown keys, missing required keys and values of the wrong type raise ConfigError naming
    the option by that path (and, for an unknown key, listing the known ones).
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{_section(where)}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        names = ", ".join(f"{where}{key}" for key in unknown)
        raise ConfigError(f"unknown option {names}; known: {', '.join(sorted(fields))}")
    missing = [
        f"{where}{name}"
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing option {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:  # a check in __post_init__ met a value it cannot compare
        raise ConfigError(f"{_section(where)}: {error}") from None


def _section(where: str) -> str:
    return where.rstrip(".") or "config"


def _coerce(hint: Any, value: Any, name: str) -> Any:
    """``value`` as option ``name`` of type ``hint`` takes it: YAML's int widened to float,
    a list to a tuple, a mapping to a nested dataclass; anything else of the wrong type
    rejected by name."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):  # type: ignore[arg-type]
            return value
        return from_dict(hint, value, f"{name}.")  # type: ignore[arg-type]
    if hint is Any:
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return value
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(value) if tuple in (origin, hint) else list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{name}: expected {hint.__name__}, got {value!r}")
    return value
