"""Statistics over timed runs: medians and quantiles of rounds >= 2, and ratios
of two variants paired by (repetition, round).

Round 1 pays for warm-up (workers starting, caches filling), so the steady
figures leave it out; pairing the rounds a cycle ran together cancels most of
the load that other processes put on both.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from harness_config import Run
from harness_load import QUIET


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def later(run: Run) -> list[float]:
    """Round times from round 2 on (round 1 if there is only one)."""
    return run.rounds_s[1:] or run.rounds_s


def summarise(runs: list[Run], names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in names:
        rs = [r for r in runs if r.variant == n]
        steady = [t for r in rs for t in later(r)]
        out[n] = {
            "startup_s": statistics.median(r.startup_s for r in rs),
            "round1_s": statistics.median(r.rounds_s[0] for r in rs),
            "steady_s": statistics.median(steady),
            "steady_p25_s": quantile(steady, 0.25),
            "steady_p75_s": quantile(steady, 0.75),
            "steady_min_s": min(steady),
            "close_s": statistics.median(r.close_s for r in rs),
        }
    return out


def paired(
    runs: list[Run],
    num: str,
    den: str,
    first: bool,
    quiet: bool = False,
    op: Callable[[float, float], float] = lambda x, y: x / y,
) -> list[float]:
    """num / den for each (repetition, round) both ran, rounds >= 2 or round 1.

    ``quiet`` keeps only the rounds whose cycle saw little other load.
    """
    a = {r.repeat: r for r in runs if r.variant == num}
    b = {r.repeat: r for r in runs if r.variant == den}
    out: list[float] = []
    for rep in sorted(a.keys() & b.keys()):
        pairs = list(zip(a[rep].rounds_s, b[rep].rounds_s, a[rep].foreign, strict=True))
        chosen = pairs[:1] if first else (pairs[1:] or pairs)
        out.extend(
            op(x, y)
            for x, y, other in chosen
            if not quiet or (other is not None and other <= QUIET)
        )
    return out
