"""Planning a synchronous round on the virtual clock: who is sampled, who
counts, who is a straggler, and when the round ends.

A round starts at the clock's ``now`` (or, if nobody is online, when the first
client comes online). Only clients online at the start are sampled
(availability-aware, as in FedScale); with over-selection ``x`` the server
samples ``ceil(k·(1 + x))`` of them from its own RNG. Each sampled client's
finish time is ``start + download + compute + upload``. A client that goes
offline before it finishes, or finishes after ``start + deadline``, is
dropped; of the rest the first k by (virtual finish time, client id) are kept.
The round ends at the k-th kept finish, or at the deadline when fewer than k
made it (the server waited that long), or at the last kept finish.

Because every finish time is known when the round is planned, dropped clients
are never trained: they cost no real time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.simtime._profiles import ProfileSet

__all__ = ["RoundPlan", "plan_round"]

Sampler = Callable[[Sequence[int], int], list[int]]


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """One planned round: every time in virtual seconds."""

    start: float
    end: float
    sampled: tuple[int, ...]
    kept: tuple[int, ...]  # in sampling (slot) order
    finish: tuple[float, ...]  # per kept client
    stragglers: tuple[int, ...]  # past the deadline or past the first k
    offline: tuple[int, ...]  # went offline before finishing
    target: int

    @property
    def partial(self) -> bool:
        return len(self.kept) < self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "sampled": list(self.sampled),
            "kept": list(self.kept),
            "finish": list(self.finish),
            "stragglers": list(self.stragglers),
            "offline": list(self.offline),
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundPlan:
        return cls(
            float(data["start"]),
            float(data["end"]),
            tuple(int(c) for c in data["sampled"]),
            tuple(int(c) for c in data["kept"]),
            tuple(float(t) for t in data["finish"]),
            tuple(int(c) for c in data["stragglers"]),
            tuple(int(c) for c in data["offline"]),
            int(data["target"]),
        )


def plan_round(
    profiles: ProfileSet,
    now: float,
    *,
    num_clients: int,
    target: int,
    over_selection: float,
    deadline: float | None,
    sample: Sampler,
    duration: Callable[[int], float],
) -> RoundPlan:
    """Plan the round that starts at ``now`` (see the module docstring)."""
    start = now
    online = profiles.online_at(start, range(num_clients))
    if not online:
        start = profiles.next_online(start)
        if not math.isfinite(start):
            raise ConfigurationError("no client is ever online again")
        online = profiles.online_at(start, range(num_clients))
    count = min(len(online), math.ceil(target * (1.0 + over_selection) - 1e-9))
    sampled = sample(online, count)
    finishes: dict[int, float] = {}
    offline: list[int] = []
    late: list[int] = []
    limit = math.inf if deadline is None else start + deadline
    for cid in sampled:
        finish = start + duration(cid)
        if profiles[cid].online_until(start) < finish:
            offline.append(cid)
        elif finish > limit:
            late.append(cid)
        else:
            finishes[cid] = finish
    ranked = sorted(finishes, key=lambda c: (finishes[c], c))
    chosen = set(ranked[:target])
    stragglers = sorted(late + ranked[target:])
    kept = tuple(c for c in sampled if c in chosen)
    if len(kept) == target:
        end = finishes[ranked[target - 1]]
    elif deadline is not None:
        end = limit
    else:
        end = max((finishes[c] for c in kept), default=start)
    return RoundPlan(
        start=start,
        end=end,
        sampled=tuple(sampled),
        kept=kept,
        finish=tuple(finishes[c] for c in kept),
        stragglers=tuple(stragglers),
        offline=tuple(sorted(offline)),
        target=target,
    )
