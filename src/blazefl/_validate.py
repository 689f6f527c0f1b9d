"""Argument checks shared by every public constructor.

One place for the wording, so every bad value is reported the same way: the
argument's name, what was expected, and the value seen.
"""

from __future__ import annotations

import math
import numbers

from blazefl._exceptions import ConfigurationError

__all__ = ["check_fraction", "check_int", "check_number"]


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (numpy integers too; never a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or int(value) < minimum
    ):
        raise ConfigurationError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def check_number(
    name: str, value: object, *, allow_zero: bool = False, unit: str = ""
) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``); ``unit`` as in
    "a finite number of seconds"."""
    number = _real(value)
    if (
        number is None
        or not math.isfinite(number)
        or not (number >= 0 if allow_zero else number > 0)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        of = f" of {unit}" if unit else ""
        raise ConfigurationError(
            f"{name} must be a finite number{of} {bound}, got {value!r}"
        )
    return number


def check_fraction(name: str, value: object) -> float:
    """A number in [0, 1) (a momentum, a decay rate)."""
    number = _real(value)
    if number is None or not 0 <= number < 1:
        raise ConfigurationError(f"{name} must be in [0, 1), got {value!r}")
    return number
