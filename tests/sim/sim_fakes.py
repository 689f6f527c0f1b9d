"""Helpers of the tests/sim suite: its seed, two small handlers and works, and
the async plumbing its tests share (draining events, waiting for a file).

The handler, the CNN work, the forkserver executor and `Misbehave` live in
tests/fakes.py, shared with the fault, scale and Ray suites; the names below
re-export them for the tests (and branches) that import them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import torch

from blazefl.sim import (
    ClientContext,
    ClientFinished,
    Event,
    Executor,
    InlineExecutor,
    RoundResult,
    Simulation,
    ThreadExecutor,
)
from fakes import (
    FORKSERVER_PRELOAD,
    FedAvgHandler,
    Misbehave,
    ScriptedError,
    ScriptedWork,
    active_clients,
    client_data,
    initial_params,
    quick_processes,
)

__all__ = [
    "FORKSERVER_PRELOAD",
    "EXECUTORS",
    "OFF_LOOP",
    "SEED",
    "FedAvgHandler",
    "Misbehave",
    "RecordingHandler",
    "ScriptedError",
    "ScriptedWork",
    "active_clients",
    "aliased_uplink",
    "client_data",
    "digest",
    "drain",
    "finish_order",
    "initial_params",
    "quick_processes",
    "run_federation",
    "simulation",
    "wait_for",
]

SEED = 7

#: A fresh executor of each kind the behaviour tests run on.
EXECUTORS: dict[str, Callable[[], Executor]] = {
    "inline": InlineExecutor,
    "threads": lambda: ThreadExecutor(2),
    "processes": lambda: quick_processes(2),
}
#: The executors that run a client off the event loop (a stop flag is set).
OFF_LOOP = ("processes", "threads")


def simulation(
    handler: Any, work: Any, kind: str, **kwargs: Any
) -> Simulation[Any, Any]:
    """``work`` for ``handler`` on a fresh executor of ``kind``, seeded `SEED`."""
    return Simulation(handler, work, executor=EXECUTORS[kind](), seed=SEED, **kwargs)


class RecordingHandler:
    """Sends a small tensor to clients [0, 1, 2] and keeps what they send back."""

    def __init__(self, rounds: int = 2) -> None:
        self.rounds = rounds
        self.received: list[Any] = []

    def sample_clients(self) -> list[int]:
        return [0, 1, 2]

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(4)

    def load(self, package: Any) -> bool:
        self.received.append(package)
        return len(self.received) % 3 == 0

    def is_stopped(self) -> bool:
        return len(self.received) >= 3 * self.rounds


def aliased_uplink(ctx: ClientContext, payload: torch.Tensor) -> dict[str, Any]:
    """An uplink in which two entries are the same tensor (like tied weights)."""
    weight = torch.full((8,), float(ctx.cid))
    return {"encoder": weight, "decoder": weight}


def digest(handler: FedAvgHandler, results: list[RoundResult]) -> dict[str, Any]:
    """What must be bitwise equal between two runs of the same federation."""
    return {
        "params": handler.params,
        "metrics": [dict(r.metrics) for r in results],
        "client_metrics": [[dict(c.metrics) for c in r.clients] for r in results],
        "cids": [r.cids for r in results],
        "summary": [dict(r.summary) for r in results],
    }


async def drain(stream: Any) -> list[Event]:
    """Every event left in a stream whose simulation has closed."""
    async with stream:
        return [event async for event in stream]


async def run_federation(
    sim: Simulation[Any, Any], rounds: int | None = None
) -> tuple[list[Any], list[Event]]:
    """Run ``sim`` to the end (or ``rounds``); return its results and events."""
    async with sim:
        stream = sim.events()
        results = await sim.run(rounds)
    return results, await drain(stream)


def finish_order(events: list[Event], round_index: int) -> list[int]:
    """The slots of one round's ClientFinished events, in completion order."""
    return [
        e.slot
        for e in events
        if isinstance(e, ClientFinished) and e.round == round_index
    ]


async def wait_for(predicate: Any, within: float = 20.0) -> None:
    """Poll ``predicate`` until it is true (fails the test after ``within`` s)."""
    with anyio.fail_after(within):
        # What we wait for (a file, a process exit) cannot set an anyio.Event.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)
