"""ThreadExecutor on free-threaded CPython: the GIL stays off and clients overlap.

The free-threaded tests run under a free-threaded build only (see
docs/free-threading.md for setting one up); the GIL-build test runs elsewhere.
No test here asserts a speed-up: the machines are shared and noisy. Overlap is
proven by construction (each client waits for the other to start), and what is
specific to free-threading is that the GIL is off while they run.
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog.testing
import torch

from blazefl.sim import ClientContext, Simulation, ThreadExecutor, gil_enabled

pytestmark = [pytest.mark.anyio, pytest.mark.anyio_backends("asyncio")]

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
# PYTHON_GIL=1 or -X gil=1: the GIL was asked for, e.g. to compare timings.
GIL_REQUESTED = getattr(sys.flags, "gil", None) == 1
free_threaded_only = pytest.mark.skipif(
    not FREE_THREADED or GIL_REQUESTED,
    reason="needs a free-threaded CPython build (python3.13t) with the GIL off",
)
gil_build_only = pytest.mark.skipif(FREE_THREADED, reason="needs a GIL build")

# How long a client waits for the other to start before it gives up; far above
# anything a working executor needs, far below the suite's per-test timeout.
MEET_TIMEOUT_SECONDS = 30.0
SPIN_ITERATIONS = 300_000


class PairHandler:
    """Sends nothing of note to clients 0 and 1 for one round; keeps their uplinks."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def sample_clients(self) -> list[int]:
        return [0, 1]

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(1)

    def load(self, package: dict[str, Any]) -> bool:
        self.received.append(package)
        return len(self.received) == 2

    def is_stopped(self) -> bool:
        return len(self.received) >= 2


@dataclass
class MeetAndSpin:
    """Pure-Python client work: announce the start, spin until the other client
    has started too, then spin a fixed number of iterations more.

    Neither client can finish before both have started, so a pair that gets
    through overlapped. A client that never sees its partner reports
    ``met=False`` after `MEET_TIMEOUT_SECONDS` instead of hanging the test.
    """

    started: dict[int, threading.Event] = field(
        default_factory=lambda: {0: threading.Event(), 1: threading.Event()}
    )

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> dict[str, Any]:
        start, cpu_start = time.perf_counter(), time.thread_time()
        self.started[ctx.cid].set()
        partner = self.started[1 - ctx.cid]
        deadline = start + MEET_TIMEOUT_SECONDS
        while not partner.is_set() and time.perf_counter() < deadline:
            pass  # spinning in Python, not sleeping: the thread stays runnable
        total = 0
        for i in range(SPIN_ITERATIONS):
            total += i * i % 7
        return {
            "cid": ctx.cid,
            "met": partner.is_set(),
            "start": start,
            "end": time.perf_counter(),
            "cpu": time.thread_time() - cpu_start,
            "thread": threading.get_ident(),
            "gil_enabled": gil_enabled(),
            "total": total,
        }


class OptimizerWork:
    """A client that steps a torch.optim optimizer: the import that can bring
    the GIL back (torch._dynamo imports triton)."""

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> dict[str, Any]:
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.ones(2, 4)).sum().backward()
        optimizer.step()
        return {"cid": ctx.cid, "gil_enabled": gil_enabled()}


async def _run_one_round(work: Any) -> tuple[PairHandler, list[dict[str, Any]]]:
    handler = PairHandler()
    sim = Simulation(handler, work, executor=ThreadExecutor(2))
    with structlog.testing.capture_logs() as logs:
        async with sim:
            await sim.run_round()
    return handler, logs


def _started_entry(logs: list[dict[str, Any]]) -> dict[str, Any]:
    (entry,) = [e for e in logs if e["event"] == "simulation_started"]
    return entry


@free_threaded_only
async def test_python_clients_overlap_on_two_threads_with_the_gil_off() -> None:
    """Two pure-Python clients run at the same time on two threads, GIL off."""
    assert not sys._is_gil_enabled(), "the GIL was on before the run"
    handler, _ = await _run_one_round(MeetAndSpin())

    first, second = sorted(handler.received, key=lambda r: r["cid"])
    assert [first["met"], second["met"]] == [True, True], "a client never met"
    assert first["start"] < second["end"]
    assert second["start"] < first["end"]
    assert first["thread"] != second["thread"]
    assert [first["gil_enabled"], second["gil_enabled"]] == [False, False]
    assert not sys._is_gil_enabled()
    # For the record only, shown with -rP (a shared 2-core machine makes any
    # bound flaky): with the GIL off this approaches 2, with it on it stays
    # near 1.
    wall = max(first["end"], second["end"]) - min(first["start"], second["start"])
    print(f"cpu_over_wall={(first['cpu'] + second['cpu']) / wall:.2f}")


@free_threaded_only
async def test_simulation_started_logs_gil_off() -> None:
    """simulation_started says free_threaded_build=True, gil_enabled=False."""
    _, logs = await _run_one_round(MeetAndSpin())
    entry = _started_entry(logs)
    assert entry["free_threaded_build"] is True
    assert entry["gil_enabled"] is False
    assert not [e for e in logs if e["event"] == "gil_reenabled"]


@free_threaded_only
async def test_optimizer_step_in_a_thread_client_keeps_the_gil_off() -> None:
    """A torch.optim step in a client leaves the GIL off (triton uninstalled)."""
    handler, logs = await _run_one_round(OptimizerWork())
    assert [r["gil_enabled"] for r in handler.received] == [False, False], (
        "the GIL came back on in a client: an extension not marked "
        "free-threading-safe was imported (triton?). Fix: pip uninstall triton, "
        "or run with PYTHON_GIL=0"
    )
    (finished,) = [e for e in logs if e["event"] == "round_finished"]
    assert finished["gil_enabled"] is False


@gil_build_only
async def test_gil_build_reports_the_gil_on() -> None:
    """On a GIL build gil_enabled() is True and simulation_started says so."""
    assert gil_enabled() is True
    _, logs = await _run_one_round(MeetAndSpin())
    entry = _started_entry(logs)
    assert entry["free_threaded_build"] is False
    assert entry["gil_enabled"] is True
