"""The virtual clock: simulated seconds since the run began.

It only moves forward, and only when the coordinator commits a round (or, in
asynchronous mode, a server update), so a cancelled or failed round leaves it
where it was. Real completion order never moves it: the time it is set to is
a client's computed virtual finish time.
"""

from __future__ import annotations

import math

__all__ = ["VirtualClock"]


class VirtualClock:
    """``now`` in virtual seconds; `advance_to` a later time."""

    __slots__ = ("_now",)

    def __init__(self, now: float = 0.0) -> None:
        if not (math.isfinite(now) and now >= 0):
            raise ValueError(f"virtual time must be finite and >= 0, got {now!r}")
        self._now = float(now)

    @property
    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        """Move to ``t`` (never backwards; ``t`` < now is a scheduling bug)."""
        if not math.isfinite(t) or t < self._now:
            raise ValueError(f"cannot move the clock from {self._now} to {t}")
        self._now = float(t)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now})"
