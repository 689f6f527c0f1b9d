"""The timing loop: every variant alive side by side, rounds interleaved.

`SimRunner`/`Sim` put a `Simulation` on its own event loop so that it can be
timed round by round next to the bare loop; `plan_variants` names the
variants (bare, inline, threads, processes at each p); `interleave` runs
their rounds in a rotating order and `run_repeat` does one repetition of it
and checks that every variant ended with the same global model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import torch
from anyio.from_thread import start_blocking_portal
from harness_config import Config, Run
from harness_load import LoadMonitor
from harness_workload import Bare, Workload

from blazefl.core import serialize_model
from blazefl.sim import InlineExecutor, ProcessExecutor, Simulation, ThreadExecutor


class SimRunner:
    """A `Simulation` (handler, work, executor) to be timed round by round.

    Each simulation runs in its own event loop on a portal thread, so that all
    variants stay alive side by side and their rounds can be interleaved. The
    round is timed inside the event loop (the portal hop is not counted).
    """

    def __init__(
        self,
        make_handler: Callable[[], Any],
        work: Any,
        make_executor: Callable[[], Any],
        seed: int,
    ) -> None:
        self.make_handler, self.work = make_handler, work
        self.make_executor, self.seed = make_executor, seed

    def start(self) -> None:
        self.stack = ExitStack()
        try:
            self.portal = self.stack.enter_context(start_blocking_portal())
            self.handler = self.make_handler()
            self.sim = Simulation(
                self.handler, self.work, executor=self.make_executor(), seed=self.seed
            )
            self.portal.call(self.sim.start)
        except BaseException:
            # Stop the portal's thread, or the interpreter waits for it forever.
            self.stack.close()
            raise

    async def _timed_round(self) -> float:
        start = time.perf_counter()
        await self.sim.run_round()
        return time.perf_counter() - start

    def round(self) -> float:
        return self.portal.call(self._timed_round)

    def close(self) -> None:
        try:
            self.portal.call(self.sim.aclose)
        finally:
            self.stack.close()


class Sim(SimRunner):
    """The shared workload through `Simulation` on one executor."""

    def __init__(self, wl: Workload, make_executor: Callable[[], Any]) -> None:
        super().__init__(wl.handler, wl.work, make_executor, wl.cfg.seed)
        self.wl = wl


def plan_variants(
    workers: Sequence[int],
    bare: Callable[[int], Any],
    sim: Callable[[Callable[[], Any]], Any],
) -> list[tuple[str, Any]]:
    """bare(p), inline (at p = 1), threads(p), processes(p) for each p, in order.

    ``bare(p)`` and ``sim(make_executor)`` return what the plan holds for the
    variant (a factory of the variant, in both scripts that use this).
    """
    out: list[tuple[str, Any]] = []
    for p in workers:
        out.append((f"bare({p})", bare(p)))
        if p == 1:
            out.append(("inline", sim(InlineExecutor)))
        out.append((f"threads({p})", sim(lambda p=p: ThreadExecutor(p))))
        out.append((f"processes({p})", sim(lambda p=p: ProcessExecutor(p))))
    return out


def variants(cfg: Config) -> list[tuple[str, Callable[[Workload], Any]]]:
    return plan_variants(
        cfg.workers,
        lambda p: lambda wl: Bare(wl, p),
        lambda make: lambda wl: Sim(wl, make),
    )


def interleave(
    plan: Sequence[tuple[str, Callable[[], Any]]],
    rounds: int,
    repeat: int,
    monitor: LoadMonitor,
) -> tuple[dict[str, Run], list[tuple[str, Any]]]:
    """Start every variant of ``plan``, run their rounds interleaved, close them.

    The order rotates each round, so that no variant always follows the same
    neighbour (e.g. the one that just woke the process workers). Returns the
    runs by name and the closed variants (their handlers hold the results).
    """
    live: list[tuple[str, Any]] = []
    runs: dict[str, Run] = {}
    try:
        for name, make in plan:
            variant = make()
            t0 = time.perf_counter()
            variant.start()
            live.append((name, variant))
            runs[name] = Run(name, repeat, time.perf_counter() - t0, [], 0.0)
        for index in range(rounds):
            shift = (index + repeat) % len(live)
            before = monitor.sample()
            for name, variant in live[shift:] + live[:shift]:
                runs[name].rounds_s.append(variant.round())
            foreign = monitor.foreign(before, monitor.sample())
            for run in runs.values():
                run.foreign.append(foreign)
    finally:
        for name, variant in live:
            t0 = time.perf_counter()
            variant.close()
            if name in runs:
                runs[name].close_s = time.perf_counter() - t0
    return runs, live


def run_repeat(
    wl: Workload,
    plan: list[tuple[str, Callable[[Workload], Any]]],
    repeat: int,
    reference: list[torch.Tensor],
    monitor: LoadMonitor,
) -> list[Run]:
    """One repetition: start every variant, interleave their rounds, close."""
    makers = [(name, lambda make=make: make(wl)) for name, make in plan]
    runs, live = interleave(makers, wl.cfg.rounds, repeat, monitor)
    for name, variant in live:
        final = serialize_model(variant.handler.model)
        if not reference:
            reference.append(final)
        elif not torch.equal(final, reference[0]):
            diff = (final - reference[0]).abs().max().item()
            raise AssertionError(
                f"{name} (repetition {repeat}) ended with a different global "
                f"model than {plan[0][0]}: max abs diff {diff}; the variants do "
                "not run the same arithmetic"
            )
    return [runs[name] for name, _ in plan]
