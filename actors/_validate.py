"""The one set of validators: each raises `ConfigError` naming the field and the value.

Two forms of every check:

- attrs validators (``attrs.field(validator=positive)``) take ``(instance, attribute,
  value)`` and name ``attribute.name``;
- ``check_*`` functions take ``(field, value)`` for plain constructors and loaders, and
  return the value (converted to ``float`` for numbers) so they can be used inline:
  ``self.timeout = check_finite_positive("read_timeout", read_timeout)``.

Numbers are real ints or floats, never ``bool`` and never NaN. "Finite" also rejects
infinities; where infinity means "no limit" the non-finite variant is used on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from actors._errors import ConfigError

__all__ = [
    "at_least",
    "check_finite_non_negative",
    "check_finite_positive",
    "check_id",
    "check_instance",
    "check_name",
    "check_non_negative_int",
    "check_number",
    "check_positive_int",
    "finite",
    "finite_non_negative",
    "finite_positive",
    "fraction",
    "instance_of",
    "name",
    "non_negative",
    "non_negative_int",
    "one_of",
    "optional",
    "positive",
    "positive_int",
    "unit_interval",
]

T = TypeVar("T")
_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


# --------------------------------------------------------------------------- plain checks


def check_number(field: str, value: object) -> float:
    """Returns `value` as a float; raises unless it is an int or float (not bool, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(field, value, "must be a number")
    return float(value)


def check_finite_positive(field: str, value: object) -> float:
    """A finite number > 0."""
    number = check_number(field, value)
    if not 0 < number < math.inf:
        raise ConfigError(field, value, "must be a finite number > 0")
    return number


def check_finite_non_negative(field: str, value: object) -> float:
    """A finite number >= 0."""
    number = check_number(field, value)
    if not 0 <= number < math.inf:
        raise ConfigError(field, value, "must be a finite number >= 0")
    return number


def check_positive_int(field: str, value: object) -> int:
    """An integer >= 1 (not bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "must be an integer >= 1")
    return value


def check_non_negative_int(field: str, value: object) -> int:
    """An integer >= 0 (not bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(field, value, "must be an integer >= 0")
    return value


def check_name(field: str, value: object) -> str:
    """A non-empty string without surrounding whitespace."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError(field, value, "must be a non-empty string")
    return value


def check_id(field: str, value: object) -> str:
    """A name that is one segment of a path (`check_name`, and no '/'): child ids."""
    name = check_name(field, value)
    if "/" in name:
        raise ConfigError(field, value, "must be a non-empty string without '/'")
    return name


def check_instance(field: str, value: object, kinds: type[T] | tuple[type[T], ...]) -> T:
    """An instance of `kinds`; the error names the expected type(s) and the value's type."""
    if not isinstance(value, kinds):
        expected = (
            kinds.__name__
            if isinstance(kinds, type)
            else " or ".join(kind.__name__ for kind in kinds)
        )
        raise ConfigError(field, value, f"must be a {expected}, not {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- attrs validators


def positive(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers > 0 (infinity allowed where it means "no limit")."""
    if check_number(attr.name, value) <= 0:
        raise ConfigError(attr.name, value, "must be > 0")


def non_negative(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers >= 0 (infinity allowed where it means "no limit")."""
    if check_number(attr.name, value) < 0:
        raise ConfigError(attr.name, value, "must be >= 0")


def finite(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts finite numbers."""
    if math.isinf(check_number(attr.name, value)):
        raise ConfigError(attr.name, value, "must be finite")


def finite_positive(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts finite numbers > 0."""
    check_finite_positive(attr.name, value)


def finite_non_negative(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts finite numbers >= 0."""
    check_finite_non_negative(attr.name, value)


def positive_int(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts integers >= 1."""
    check_positive_int(attr.name, value)


def non_negative_int(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts integers >= 0."""
    check_non_negative_int(attr.name, value)


def fraction(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers in (0, 1]."""
    number = check_number(attr.name, value)
    if not 0 < number <= 1:
        raise ConfigError(attr.name, value, "must be in (0, 1]")


def unit_interval(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts numbers in [0, 1]."""
    number = check_number(attr.name, value)
    if not 0 <= number <= 1:
        raise ConfigError(attr.name, value, "must be a number in [0, 1]")


def name(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts non-empty strings without surrounding whitespace."""
    check_name(attr.name, value)


def at_least(minimum: float) -> _Validator:
    """Returns a validator accepting numbers >= `minimum`."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if check_number(attr.name, value) < minimum:
            raise ConfigError(attr.name, value, f"must be >= {minimum:g}")

    return check


def instance_of(*kinds: type[Any]) -> _Validator:
    """Returns a validator accepting instances of `kinds` (a `ConfigError`, unlike attrs')."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        check_instance(attr.name, value, kinds)

    return check


def one_of(choices: Iterable[object]) -> _Validator:
    """Returns a validator accepting only the given values."""
    allowed = tuple(choices)

    def check(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if value not in allowed:
            listed = ", ".join(repr(choice) for choice in allowed)
            raise ConfigError(attr.name, value, f"must be one of {listed}")

    return check


def optional(validator: _Validator) -> _Validator:
    """Wraps a validator so that `None` is accepted too."""

    def check(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            validator(inst, attr, value)

    return check
