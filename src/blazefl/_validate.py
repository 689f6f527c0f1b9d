"""Argument checks shared by every public constructor and the command line.

One validator per concept (counts, positive numbers, fractions, ratios, the
run seed), so a bad value is refused by the same rule wherever it enters. The
rule is fixed; the sentence is not: every validator takes a ``wording``, a
`str.format` template with ``{name}``, ``{value!r}`` and the bound's own
fields, because the BlazeFL 3.0 classes keep BlazeFL's phrases (``num_clients
must be positive, got 0``) and the command line leaves the name to its own
prefix (``Invalid value for '--clients': must be an integer >= 1, got 0``).

Nothing here imports torch: the command line's ``--help`` reads these.
"""

from __future__ import annotations

import math
import numbers

from blazefl._exceptions import ConfigurationError

__all__ = [
    "SEED_BOUND",
    "check_fraction",
    "check_int",
    "check_number",
    "check_ratio",
    "check_seed",
    "sampled_per_round",
]

#: Run seeds are integers in [0, SEED_BOUND): a signed 64-bit value. It is
#: the tightest limit among the places a run seed goes: TOML (config.toml)
#: stores signed 64-bit integers, ``torch.manual_seed`` takes < 2**64 (the
#: server's RNG suite and model), `derive_seed` < 2**128 (client suites).
SEED_BOUND = 2**63

INT_WORDING = "{name} must be an integer >= {minimum}, got {value!r}"
NUMBER_WORDING = "{name} must be a finite number{of} {bound}, got {value!r}"
FRACTION_WORDING = "{name} must be in [0, 1), got {value!r}"
RATIO_WORDING = "{name} must be in (0, 1], got {value!r}"
SEED_WORDING = "{name} must be an integer in [0, 2**63), got {value!r}"


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def check_int(
    name: str, value: object, minimum: int = 1, *, wording: str = INT_WORDING
) -> int:
    """An integer >= ``minimum`` (numpy integers too; never a bool)."""
    number = _integer(value)
    if number is None or number < minimum:
        raise ConfigurationError(
            wording.format(name=name, value=value, minimum=minimum)
        )
    return number


def check_number(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    unit: str = "",
    wording: str = NUMBER_WORDING,
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
            wording.format(name=name, value=value, bound=bound, of=of)
        )
    return number


def check_fraction(
    name: str, value: object, *, wording: str = FRACTION_WORDING
) -> float:
    """A number in [0, 1) (a momentum, a decay rate)."""
    number = _real(value)
    if number is None or not 0 <= number < 1:
        raise ConfigurationError(wording.format(name=name, value=value))
    return number


def check_ratio(name: str, value: object, *, wording: str = RATIO_WORDING) -> float:
    """A number in (0, 1] (the share of clients sampled each round)."""
    number = _real(value)
    if number is None or not 0 < number <= 1:
        raise ConfigurationError(wording.format(name=name, value=value))
    return number


def check_seed(name: str, value: object, *, wording: str = SEED_WORDING) -> int:
    """A run seed: an integer in [0, `SEED_BOUND`) (numpy integers too)."""
    number = _integer(value)
    if number is None or not 0 <= number < SEED_BOUND:
        raise ConfigurationError(wording.format(name=name, value=value))
    return number


def sampled_per_round(num_clients: int, sample_ratio: float) -> int:
    """How many clients a round samples: ``int(num_clients * sample_ratio)``.

    The one formula for it (the server samples this many, the command line
    prints it). The epsilon keeps 100 * 0.29 = 28.999... from sampling 28.
    """
    return int(num_clients * sample_ratio + 1e-9)
