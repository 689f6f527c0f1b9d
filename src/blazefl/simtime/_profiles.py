"""Client system profiles: how fast a device computes, how fast it talks, when
it is online.

A federation's devices differ by an order of magnitude in speed and come and go
(FedScale's traces show both). A `ProfileSet` holds one profile per registered
client as columns (NumPy arrays), so 100,000 clients cost a few megabytes, and
answers the two questions the scheduler asks: how long does client ``cid``
take (`blazefl.simtime.client_timing`), and who is online at virtual time
``t``.

Generated profiles (`generate_profiles`) draw from their own NumPy stream
seeded by ``(run seed, a fixed tag)``, never from a client's RNG suite or the
server's, so turning profiles on leaves every training number as it was.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number, check_seed

__all__ = ["ClientProfile", "ProfileSet", "generate_profiles"]

#: mixed into the run seed so the profile stream is apart from every other one
_PROFILE_TAG = 0x51_7C_10_C4

Windows = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class ClientProfile:
    """One device: seconds per training sample, link speeds, availability.

    ``windows`` are half-open ``[start, end)`` online intervals in virtual
    seconds, sorted and disjoint; with ``period`` they repeat every ``period``
    seconds (a daily pattern); ``None`` means always online.
    """

    compute_s_per_sample: float
    download_bps: float
    upload_bps: float
    latency_s: float
    windows: Windows | None = None
    period: float | None = None

    def online_at(self, t: float) -> bool:
        """Whether the device is online at virtual time ``t``."""
        return _window_at(self.windows, self.period, t) is not None

    def online_until(self, t: float) -> float:
        """When the online stretch holding ``t`` ends (``inf``: never); the
        device must be online at ``t``."""
        found = _window_at(self.windows, self.period, t)
        if found is None:
            raise ValueError(f"the device is offline at t={t}")
        return found[1]

    def next_online(self, t: float) -> float:
        """The first virtual time >= ``t`` at which the device is online."""
        windows, period = self.windows, self.period
        if windows is None or _window_at(windows, period, t) is not None:
            return t
        if not windows:
            return math.inf
        base = 0.0
        local = t
        if period is not None:
            base = math.floor(t / period) * period
            local = t - base
        starts = [w[0] for w in windows]
        i = bisect.bisect_right(starts, local)
        if i < len(windows):
            return base + windows[i][0]
        if period is None:
            return math.inf
        return base + period + windows[0][0]


def _window_at(
    windows: Windows | None, period: float | None, t: float
) -> tuple[float, float] | None:
    """The online window (absolute times) that holds ``t``, or None."""
    if windows is None:
        return (-math.inf, math.inf)
    base = 0.0
    local = t
    if period is not None:
        base = math.floor(t / period) * period
        local = t - base
    i = bisect.bisect_right([w[0] for w in windows], local) - 1
    if i < 0:
        return None
    start, end = windows[i]
    if not start <= local < end:
        return None
    if period is not None and end >= period and windows[0][0] <= 0.0:
        # A window running to the period's end continues into the next one.
        return (base + start, base + period + windows[0][1])
    return (base + start, base + end)


class ProfileSet:
    """Profiles of clients ``0..n-1``, stored column-wise.

    Build one with `generate_profiles` or `blazefl.simtime.read_trace`, or from
    your own columns. Speeds must be finite and > 0 (a device that computes in
    negative time is an input error, reported with its client id).
    """

    __slots__ = ("_compute", "_down", "_latency", "_period", "_up", "_windows")

    _period: list[float | None]

    def __init__(
        self,
        compute_s_per_sample: Sequence[float] | np.ndarray,
        download_bps: Sequence[float] | np.ndarray,
        upload_bps: Sequence[float] | np.ndarray,
        latency_s: Sequence[float] | np.ndarray,
        *,
        windows: Sequence[Windows | None] | None = None,
        period: float | Sequence[float | None] | None = None,
    ) -> None:
        columns = {
            "compute_s_per_sample": np.asarray(compute_s_per_sample, np.float64),
            "download_bps": np.asarray(download_bps, np.float64),
            "upload_bps": np.asarray(upload_bps, np.float64),
            "latency_s": np.asarray(latency_s, np.float64),
        }
        sizes = {name: col.shape for name, col in columns.items()}
        n = columns["compute_s_per_sample"].shape
        if len(n) != 1 or n[0] < 1 or any(s != n for s in sizes.values()):
            raise ConfigurationError(
                f"profile columns must be 1-D and of one length >= 1, got {sizes}"
            )
        for name, col in columns.items():
            allow_zero = name == "latency_s"
            bad = ~np.isfinite(col) | ((col < 0) if allow_zero else (col <= 0))
            if bad.any():
                cid = int(np.flatnonzero(bad)[0])
                bound = ">= 0" if allow_zero else "> 0"
                raise ConfigurationError(
                    f"client {cid} has {name}={float(col[cid])!r}; expected a finite "
                    f"number {bound}"
                )
        periods = _periods(period, n[0])
        if windows is not None:
            if len(windows) != n[0]:
                raise ConfigurationError(
                    f"availability windows for {len(windows)} clients, profiles "
                    f"for {n[0]}"
                )
            windows = [
                None if w is None else _check_windows(i, w, periods[i])
                for i, w in enumerate(windows)
            ]
        self._compute = columns["compute_s_per_sample"]
        self._down = columns["download_bps"]
        self._up = columns["upload_bps"]
        self._latency = columns["latency_s"]
        self._windows: list[Windows | None] | None = (
            None
            if windows is None or all(w is None for w in windows)
            else list(windows)
        )
        self._period = periods

    def __len__(self) -> int:
        return int(self._compute.shape[0])

    def __getitem__(self, cid: int) -> ClientProfile:
        if not 0 <= cid < len(self):
            raise ConfigurationError(
                f"client {cid} has no profile; the profiles cover clients "
                f"0..{len(self) - 1}"
            )
        return ClientProfile(
            float(self._compute[cid]),
            float(self._down[cid]),
            float(self._up[cid]),
            float(self._latency[cid]),
            None if self._windows is None else self._windows[cid],
            self._period[cid],
        )

    @property
    def always_online(self) -> bool:
        return self._windows is None

    def online_at(self, t: float, among: Sequence[int] | None = None) -> list[int]:
        """The clients (of ``among``, default all) online at time ``t``, sorted."""
        cids = range(len(self)) if among is None else sorted(among)
        if self._windows is None:
            return list(cids)
        windows, periods = self._windows, self._period
        return [c for c in cids if _window_at(windows[c], periods[c], t)]

    def next_online(self, t: float) -> float:
        """The first time >= ``t`` at which any client is online (inf: never)."""
        if self._windows is None:
            return t
        return min(self[c].next_online(t) for c in range(len(self)))

    def check_covers(self, num_clients: int) -> None:
        """Refuse a federation with clients the profiles do not describe."""
        if num_clients > len(self):
            raise ConfigurationError(
                f"the profiles describe {len(self)} clients but the federation "
                f"has {num_clients}; clients {len(self)}..{num_clients - 1} have "
                "no profile"
            )


def _periods(
    period: float | Sequence[float | None] | None, n: int
) -> list[float | None]:
    if period is None or isinstance(period, int | float):
        one = (
            None
            if period is None
            else check_number("availability period", period, unit="seconds")
        )
        return [one] * n
    periods = list(period)
    if len(periods) != n:
        raise ConfigurationError(
            f"periods for {len(periods)} clients, profiles for {n}"
        )
    return [
        None if p is None else check_number(f"client {i}'s period", p, unit="seconds")
        for i, p in enumerate(periods)
    ]


def _check_windows(cid: int, windows: Windows, period: float | None) -> Windows:
    out = []
    last = -math.inf
    for start, end in windows:
        if not (math.isfinite(start) and start >= 0 and end > start):
            raise ConfigurationError(
                f"client {cid} has availability window ({start}, {end}); expected "
                "0 <= start < end"
            )
        if start < last:
            raise ConfigurationError(
                f"client {cid}'s availability windows overlap or are unsorted at "
                f"({start}, {end})"
            )
        if period is not None and end > period:
            raise ConfigurationError(
                f"client {cid} has window ({start}, {end}) past the period {period}"
            )
        out.append((float(start), float(end)))
        last = end
    return tuple(out)


def generate_profiles(
    num_clients: int,
    seed: int,
    *,
    compute_median: float = 0.005,
    compute_sigma: float = 1.0,
    download_median_mbps: float = 20.0,
    upload_median_mbps: float = 5.0,
    bandwidth_sigma: float = 0.8,
    latency_s: float = 0.05,
    online_fraction: float = 1.0,
    period: float = 3600.0,
) -> ProfileSet:
    """Heavy-tailed device profiles drawn from the run seed's profile stream.

    Compute speed (seconds per sample) and both bandwidths are log-normal:
    ``median · exp(σ·z)``, z standard normal, so σ=1 spreads the fastest and
    slowest tenth of devices about 13x apart, as in FedScale's device traces.
    With ``online_fraction < 1`` each client is online for that share of
    every ``period`` seconds, from a uniformly drawn phase.
    """
    n = check_int("num_clients", num_clients)
    seed = check_seed("seed", seed)
    compute_median = check_number("compute_median", compute_median, unit="seconds")
    check_number("compute_sigma", compute_sigma, allow_zero=True)
    check_number("bandwidth_sigma", bandwidth_sigma, allow_zero=True)
    check_number("latency_s", latency_s, allow_zero=True, unit="seconds")
    down = check_number("download_median_mbps", download_median_mbps) * 1e6
    up = check_number("upload_median_mbps", upload_median_mbps) * 1e6
    if not 0 < online_fraction <= 1:
        raise ConfigurationError(
            f"online_fraction must be in (0, 1], got {online_fraction!r}"
        )
    rng = np.random.default_rng([seed, _PROFILE_TAG])
    compute = compute_median * np.exp(compute_sigma * rng.standard_normal(n))
    download = down * np.exp(bandwidth_sigma * rng.standard_normal(n))
    upload = up * np.exp(bandwidth_sigma * rng.standard_normal(n))
    windows: list[Windows | None] | None = None
    if online_fraction < 1:
        period = check_number("period", period, unit="seconds")
        on = online_fraction * period
        phases = rng.uniform(0.0, period, n)
        windows = [_periodic_window(float(p), on, period) for p in phases]
    return ProfileSet(
        compute,
        download,
        upload,
        np.full(n, latency_s),
        windows=windows,
        period=period if windows is not None else None,
    )


def _periodic_window(phase: float, on: float, period: float) -> Windows:
    """``[phase, phase + on)`` folded into one period."""
    end = phase + on
    if end <= period:
        return ((phase, end),)
    return ((0.0, end - period), (phase, period))
