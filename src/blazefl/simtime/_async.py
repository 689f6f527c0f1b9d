"""The asynchronous schedule: which clients train, on which model version, and
in which order their updates reach the server.

Up to ``concurrency`` clients are in flight at once. Whenever a slot is free
(at the start, and after every arrival) the scheduler dispatches a client
online at that virtual time and not already in flight, drawn from its own RNG
(seeded from the run seed), with the server's current model version. Its
arrival time is ``dispatch + download + compute + upload``; a client whose
online window ends first is dropped at that moment instead. Arrivals are
taken strictly in (virtual arrival time, client id) order; every
``buffer_size`` of them make one server update (FedBuff; FedAsync is
``buffer_size=1``).

The scheduler is plain data: `plan_step` runs on a copy, so the coordinator
can find out which real results it needs, compute them on the executor in
parallel, and only then commit the step (or drop it on failure or
cancellation). Real completion order never enters.
"""

from __future__ import annotations

import copy
import heapq
import math
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from blazefl._exceptions import ConfigurationError
from blazefl.simtime._profiles import ProfileSet

__all__ = ["AsyncScheduler", "Flight", "StepPlan"]

_SCHEDULER_TAG = 0xA5_1C_F1_00
_TRIES = 64  # rejection draws before falling back to listing the candidates


@dataclass(frozen=True, slots=True, order=True)
class Flight:
    """One client in flight; ordered by (arrival time, client id)."""

    finish: float
    cid: int
    version: int
    start: float
    dropped: bool  # goes offline at ``finish`` instead of arriving

    @property
    def key(self) -> tuple[int, int]:
        return (self.cid, self.version)


@dataclass(frozen=True, slots=True)
class StepPlan:
    """What one server update takes: arrivals in application order."""

    arrivals: tuple[Flight, ...]
    dropped: tuple[Flight, ...]
    dispatched: tuple[Flight, ...]
    end: float


class AsyncScheduler:
    """The in-flight clients, the clock and the dispatch RNG of async mode."""

    def __init__(
        self,
        profiles: ProfileSet,
        *,
        num_clients: int,
        concurrency: int,
        buffer_size: int,
        seed: int,
        duration: Callable[[int], float],
    ) -> None:
        profiles.check_covers(num_clients)
        if concurrency > num_clients:
            raise ConfigurationError(
                f"concurrency={concurrency} is above the federation's "
                f"{num_clients} clients"
            )
        self.profiles = profiles
        self.num_clients = num_clients
        self.concurrency = concurrency
        self.buffer_size = buffer_size
        self.duration = duration
        self.now = 0.0
        self.flights: list[Flight] = []  # a heap
        entropy = np.random.SeedSequence([seed, _SCHEDULER_TAG]).generate_state(2)
        self.rng = random.Random(int(entropy[0]) << 32 | int(entropy[1]))

    @property
    def in_flight(self) -> int:
        return len(self.flights)

    def copy(self) -> AsyncScheduler:
        twin = copy.copy(self)
        twin.flights = list(self.flights)
        twin.rng = random.Random()
        twin.rng.setstate(self.rng.getstate())
        return twin

    def adopt(self, other: AsyncScheduler) -> None:
        """Take ``other``'s state (a planned copy being committed)."""
        self.now, self.flights, self.rng = other.now, other.flights, other.rng

    def plan_step(self, version: int, failed: Collection[tuple[int, int]]) -> StepPlan:
        """Advance (this object: call it on a `copy`) to the next server update.

        ``failed`` holds (cid, version) pairs whose real training failed: they
        are treated like clients that dropped out.
        """
        arrivals: list[Flight] = []
        dropped: list[Flight] = []
        dispatched: list[Flight] = []
        while len(arrivals) < self.buffer_size:
            dispatched.extend(self._fill(version))
            if not self.flights:
                later = self.profiles.next_online(math.nextafter(self.now, math.inf))
                if not math.isfinite(later):
                    raise ConfigurationError(
                        f"no client is online after virtual time {self.now}"
                    )
                self.now = later
                continue
            flight = heapq.heappop(self.flights)
            self.now = max(self.now, flight.finish)
            if flight.dropped or flight.key in failed:
                dropped.append(flight)
            else:
                arrivals.append(flight)
        return StepPlan(tuple(arrivals), tuple(dropped), tuple(dispatched), self.now)

    def _fill(self, version: int) -> list[Flight]:
        busy = {f.cid for f in self.flights}
        new = []
        while len(self.flights) < self.concurrency:
            cid = self._draw(busy)
            if cid is None:
                break
            busy.add(cid)
            finish = self.now + self.duration(cid)
            until = self.profiles[cid].online_until(self.now)
            flight = Flight(
                finish=min(finish, until),
                cid=cid,
                version=version,
                start=self.now,
                dropped=until < finish,
            )
            heapq.heappush(self.flights, flight)
            new.append(flight)
        return new

    def _draw(self, busy: set[int]) -> int | None:
        """A uniformly drawn client online now and not in flight, or None."""
        n, t, profiles = self.num_clients, self.now, self.profiles
        for _ in range(_TRIES):
            cid = self.rng.randrange(n)
            if cid not in busy and profiles[cid].online_at(t):
                return cid
        candidates = [c for c in profiles.online_at(t, range(n)) if c not in busy]
        return self.rng.choice(candidates) if candidates else None

    # -- checkpoints ---------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "now": self.now,
            "flights": [
                [f.finish, f.cid, f.version, f.start, f.dropped]
                for f in sorted(self.flights)
            ],
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.now = float(state["now"])
        self.flights = [
            Flight(float(a), int(b), int(c), float(d), bool(e))
            for a, b, c, d, e in state["flights"]
        ]
        heapq.heapify(self.flights)
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
