"""The aggregators and attacks by name: what ``blazefl run --aggregator`` and
``--attack`` take, and how their options map onto the classes."""

from __future__ import annotations

from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms import Aggregator, WeightedMean
from blazefl.robust._aggregators import Median, NormBound, TrimmedMean
from blazefl.robust._attacks import (
    Attack,
    Backdoor,
    GaussianNoise,
    LabelFlip,
    ScaledUpdate,
    SignFlip,
)
from blazefl.robust._krum import Bulyan, Krum, MultiKrum

__all__ = ["AGGREGATORS", "ATTACKS", "make_aggregator", "make_attack"]

AGGREGATORS: dict[str, type[Aggregator]] = {
    "mean": WeightedMean,
    "median": Median,
    "trimmed-mean": TrimmedMean,
    "krum": Krum,
    "multi-krum": MultiKrum,
    "bulyan": Bulyan,
    "norm-bound": NormBound,
}
"""Every built-in aggregator by name (``--aggregator``)."""

ATTACKS: dict[str, type[Attack]] = {
    "sign-flip": SignFlip,
    "label-flip": LabelFlip,
    "scale": ScaledUpdate,
    "noise": GaussianNoise,
    "backdoor": Backdoor,
}
"""Every built-in attack by name (``--attack``)."""

#: Which attacks take a strength, and what it sets.
_STRENGTH = {
    "sign-flip": "scale",
    "scale": "scale",
    "noise": "std",
    "backdoor": "scale",
}


def _known(kind: str, name: object, table: dict[str, Any]) -> str:
    if not isinstance(name, str) or name not in table:
        raise ConfigurationError(
            f"unknown {kind} {name!r}; expected one of "
            f"{', '.join(repr(n) for n in table)}"
        )
    return name


def make_aggregator(
    name: str, *, f: int = 0, beta: float | None = None, bound: float | None = None
) -> Aggregator:
    """The aggregator ``name`` tolerating ``f`` Byzantine clients.

    ``beta`` is the trimmed mean's fraction (default: trim f each side);
    ``bound`` the norm bound's M (required for ``norm-bound``). The mean and
    the norm bound have no f to tolerate: ``f`` does not apply to them.
    """
    _known("aggregator", name, AGGREGATORS)
    if beta is not None and name != "trimmed-mean":
        raise ConfigurationError(
            f"beta applies to the trimmed mean only, not to aggregator {name!r}"
        )
    if bound is not None and name != "norm-bound":
        raise ConfigurationError(
            f"a norm bound applies to aggregator 'norm-bound' only, not {name!r}"
        )
    if name == "mean":
        return WeightedMean()
    if name == "norm-bound":
        if bound is None:
            raise ConfigurationError(
                "aggregator 'norm-bound' needs its bound M (the largest L2 norm an "
                "update keeps, e.g. a little above the median norm of honest "
                "updates)"
            )
        return NormBound(bound)
    if name == "trimmed-mean":
        return TrimmedMean(f=f, beta=beta)
    cls: Any = AGGREGATORS[name]
    return cls(f=f)  # type: ignore[no-any-return]


def make_attack(
    name: str, *, strength: float | None = None, target: int | None = None
) -> Attack:
    """The attack ``name``; ``strength`` is sign-flip's and scale's factor s,
    noise's σ, backdoor's boost (each has a default); ``target`` the
    backdoor's label (default 0)."""
    _known("attack", name, ATTACKS)
    if strength is not None and name not in _STRENGTH:
        raise ConfigurationError(
            f"attack {name!r} takes no strength; it applies to "
            f"{', '.join(repr(n) for n in _STRENGTH)}"
        )
    if target is not None and name != "backdoor":
        raise ConfigurationError(
            f"a target label applies to attack 'backdoor' only, not {name!r}"
        )
    kwargs: dict[str, Any] = {}
    if strength is not None:
        kwargs[_STRENGTH[name]] = strength
    if target is not None:
        kwargs["target"] = target
    return ATTACKS[name](**kwargs)
