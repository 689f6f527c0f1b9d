"""The spread of per-client accuracies: one pure function, one set of keys.

A federation's mean accuracy hides the clients it fails; per-client
evaluation reports the spread instead. For accuracies ``a_1 .. a_n`` of the
clients evaluated (each client counts once, whatever its test size),
`accuracy_stats` returns, under a prefix such as ``client_acc``:

- ``_mean`` and ``_std`` (population standard deviation, ``ddof=0``);
- ``_p10``, ``_p50``, ``_p90``: quantiles with linear interpolation between
  order statistics (numpy's default ``"linear"`` method);
- ``_worst10``: the mean of the lowest ``ceil(n / 10)`` accuracies (the
  worst 10% of clients, at least one);
- ``_above``: the fraction of clients with accuracy ``>= threshold``;
- ``_count``: ``n``.

With no client (``n == 0``) the count is 0 and every other key is None.
Sums are `math.fsum` over the sorted values, so the figures do not depend on
the order clients were evaluated in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from blazefl._exceptions import ConfigurationError

__all__ = ["STAT_SUFFIXES", "accuracy_stats", "quantile"]

#: The suffixes `accuracy_stats` appends to its prefix, in order.
STAT_SUFFIXES = ("mean", "std", "p10", "p50", "p90", "worst10", "above", "count")


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``ordered`` (linear interpolation)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    frac = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * frac


def accuracy_stats(
    values: Iterable[float], *, threshold: float = 0.5, prefix: str = "client_acc"
) -> dict[str, float | int | None]:
    """The spread of ``values`` under ``prefix`` (see the module docstring)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigurationError(f"threshold must be a number, got {threshold!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigurationError(
            f"threshold must be an accuracy in [0, 1], got {threshold!r}"
        )
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    keys = [f"{prefix}_{s}" for s in STAT_SUFFIXES]
    if n == 0:
        return {**dict.fromkeys(keys[:-1]), keys[-1]: 0}
    if not all(math.isfinite(v) for v in ordered):
        raise ConfigurationError(f"accuracies must be finite numbers, got {ordered!r}")
    mean = math.fsum(ordered) / n
    variance = math.fsum((v - mean) ** 2 for v in ordered) / n
    worst = ordered[: math.ceil(n / 10)]
    above = sum(1 for v in ordered if v >= threshold)
    figures: list[float | int] = [
        mean,
        math.sqrt(variance),
        quantile(ordered, 0.1),
        quantile(ordered, 0.5),
        quantile(ordered, 0.9),
        math.fsum(worst) / len(worst),
        above / n,
        n,
    ]
    return dict(zip(keys, figures, strict=True))
