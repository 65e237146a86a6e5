"""Validation helpers shared by the model configs.

Every config is a frozen dataclass, loaded from a dict by ``hymoerec.schema.from_dict`` like
the run configs; ``__post_init__`` calls these checks so that a bad value fails on
construction with a ``ConfigError`` naming the option.
"""

from __future__ import annotations

from collections.abc import Collection

from hymoerec.schema import ConfigError


def positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def probability(name: str, value: object) -> None:
    """A dropout-like rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number, got {value!r}")


def one_of(name: str, value: object, allowed: Collection[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
