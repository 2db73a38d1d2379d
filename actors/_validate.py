"""attrs validators that raise `ConfigError` naming the field and the value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from actors._errors import ConfigError

__all__ = ["at_least", "fraction", "non_negative", "optional", "positive", "positive_int"]

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(field, value, "must be a number")
    return float(value)


def positive(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers > 0 (infinity allowed where it means "no limit")."""
    if _number(attr.name, value) <= 0:
        raise ConfigError(attr.name, value, "must be > 0")


def non_negative(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers >= 0."""
    if _number(attr.name, value) < 0:
        raise ConfigError(attr.name, value, "must be >= 0")


def positive_int(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts integers >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(attr.name, value, "must be an integer >= 1")


def fraction(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers in (0, 1]."""
    number = _number(attr.name, value)
    if not 0 < number <= 1:
        raise ConfigError(attr.name, value, "must be in (0, 1]")


def at_least(minimum: float) -> _Validator:
    """Returns a validator accepting numbers >= `minimum`."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if _number(attr.name, value) < minimum:
            raise ConfigError(attr.name, value, f"must be >= {minimum:g}")

    return check


def optional(validator: _Validator) -> _Validator:
    """Wraps a validator so that `None` is accepted too."""

    def check(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            validator(inst, attr, value)

    return check
