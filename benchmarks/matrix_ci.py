"""How sure a matrix ratio is: a bootstrap interval, and the verdict it gives.

A ratio of the matrix (threads(p) / bare(p), processes(p) / threads(p)) is
the median of paired per-cycle ratios, one for each (repetition, round >= 2)
that both variants ran. On a shared 2-core machine those values scatter by
several per cent, so a median of 1.054 against a target of 1.05 alone says
little. The 95% interval of that median, from resampling the paired values,
says whether a miss is beyond the noise of the run:

* PASS: the ratio meets the target;
* within noise: it does not, but the interval includes the target;
* MISS: the whole interval is above the target.

The interval is the percentile bootstrap (`scipy.stats.bootstrap`, where
scipy is installed; else the same resampling written with numpy). The
percentile method rather than BCa because BCa's acceleration is unstable
for a median of 10-20 values with ties. A fixed seed makes every re-render
of a saved run give the same interval.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0


def method() -> str:
    """What `median_ci` uses here (recorded with the results)."""
    try:
        import scipy
    except ImportError:
        return f"numpy percentile bootstrap, {RESAMPLES} resamples, seed {SEED}"
    return (
        f"scipy {scipy.__version__} stats.bootstrap (percentile), "
        f"{RESAMPLES} resamples, seed {SEED}"
    )


def median_ci(xs: Sequence[float]) -> list[float] | None:
    """The `CONFIDENCE` interval ``[low, high]`` of the median of ``xs``;
    None for fewer than two values (nothing to resample)."""
    import numpy as np

    if len(xs) < 2:
        return None
    data = np.asarray(xs, dtype=np.float64)
    if np.all(data == data[0]):  # every resample is the same median
        return [float(data[0]), float(data[0])]
    rng = np.random.default_rng(SEED)
    try:
        from scipy import stats
    except ImportError:
        picks = rng.integers(0, len(data), size=(RESAMPLES, len(data)))
        medians = np.median(data[picks], axis=1)
        tail = (1 - CONFIDENCE) / 2
        low, high = np.quantile(medians, [tail, 1 - tail])
        return [float(low), float(high)]
    # scipy >= 1.15 names the generator ``rng``; older ones ``random_state``.
    seed_arg = (
        "rng"
        if "rng" in inspect.signature(stats.bootstrap).parameters
        else ("random_state")
    )
    res = stats.bootstrap(
        (data,),
        np.median,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        **{seed_arg: rng},
    )
    ci = res.confidence_interval
    return [float(ci.low), float(ci.high)]


def verdict(value: float | None, ci: Sequence[float] | None, limit: float) -> str:
    """PASS, "within noise" or MISS for a ratio that must be <= ``limit``."""
    if value is None:
        return "n/a"
    if value <= limit:
        return "PASS"
    if ci is not None and ci[0] <= limit:
        return "within noise"
    return "MISS"
