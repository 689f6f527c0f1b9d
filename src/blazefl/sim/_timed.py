"""The coordinator's side of simulated time: the virtual clock, synchronous
rounds with deadlines, and the asynchronous step loop on the executor.

`Simulation` owns one `TimedRounds` when given a `blazefl.simtime.SimTime`.
Synchronous mode plans each round (`blazefl.simtime.plan_round`) and trains
only the clients that will count; asynchronous mode plans the next server
update on a copy of the schedule (`blazefl.simtime.AsyncScheduler`), runs every
in-flight client whose result is not known yet in one executor session (real
training stays parallel), and commits the step only once the results it needs
are in: so cancellation or a failure changes nothing, and the order of
application is the schedule's, never the order real work finished in.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from blazefl._exceptions import ConfigurationError, RoundFailedError
from blazefl.sim._context import ClientContext, ClientState
from blazefl.sim._engine import OnOutcome, RoundRunner
from blazefl.sim._executors._result_buffers import tensor_bytes
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork
from blazefl.simtime._async import AsyncScheduler, Flight, StepPlan
from blazefl.simtime._clock import VirtualClock
from blazefl.simtime._config import SimTime
from blazefl.simtime._sync import RoundPlan, plan_round
from blazefl.simtime._timing import client_timing

__all__ = ["TimedRounds", "VersionedWork"]


class VersionedWork:
    """Client work whose payload is a bundle of model versions: each job's
    argument names the version it trains on (async mode, where clients in
    flight started from different models)."""

    __slots__ = ("work",)

    def __init__(self, work: JobWork) -> None:
        self.work = work

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        version, inner = arg
        return self.work(ctx, payload[version], inner)

    def __getstate__(self) -> JobWork:
        return self.work

    def __setstate__(self, work: JobWork) -> None:
        self.work = work


def _method(handler: object, name: str, why: str) -> Callable[..., Any]:
    method = getattr(handler, name, None)
    if not callable(method):
        raise ConfigurationError(
            f"{type(handler).__name__} has no {name}(), which {why} needs "
            "(blazefl.algorithms.FederatedServer has it)"
        )
    return method  # type: ignore[no-any-return]


class TimedRounds:
    """The clock and the scheduling of one timed simulation."""

    def __init__(
        self, time: SimTime, handler: Any, trainer: Any, seed: int, runner: RoundRunner
    ) -> None:
        self.time = time
        self.clock = VirtualClock()
        self.runner = runner
        self.sample_among = _method(handler, "sample_among", "simulated time")
        self.num_clients = int(_attr(handler, "num_clients"))
        self.target = int(_attr(handler, "clients_per_round"))
        time.profiles.check_covers(self.num_clients)
        self.epochs = (
            time.epochs if time.epochs is not None else _trainer_epochs(trainer)
        )
        self.samples = time.samples or _trainer_samples(trainer)
        self._counts: dict[int, int] = {}
        self.model_bytes: int | None = None
        self.plan: RoundPlan | None = None
        self.scheduler: AsyncScheduler | None = None
        if time.mode == "async":
            adapter = runner.adapter
            if adapter.job_arg is not None or adapter.finish is not None:
                raise ConfigurationError(
                    "asynchronous mode runs native client work (a FederatedClient "
                    f"or work(ctx, payload)); {adapter.client} is a BlazeFL trainer"
                )
            if runner.executor.kind == "cohort":
                raise ConfigurationError(
                    "asynchronous mode trains clients that started from different "
                    "model versions, which the cohort executor cannot batch; use "
                    "inline, threads, processes or ray"
                )
            self.load_stale = _method(handler, "load_stale", "asynchronous mode")
            size = _method(handler, "async_buffer_size", "asynchronous mode")()
            buffer = time.buffer_size if time.buffer_size is not None else size
            if buffer > time.concurrency:
                raise ConfigurationError(
                    f"buffer_size={buffer} (the algorithm's default) is above "
                    f"concurrency={time.concurrency}; raise the concurrency or "
                    "lower the buffer size"
                )
            check = getattr(handler, "check_buffer_size", None)
            if callable(check):
                check(buffer)
            self.scheduler = AsyncScheduler(
                time.profiles,
                num_clients=self.num_clients,
                concurrency=time.concurrency,
                buffer_size=buffer,
                seed=seed,
                duration=self.duration,
            )
        self.versions: dict[int, Any] = {}
        self.results: dict[tuple[int, int], JobOutcome] = {}
        self._sessions = itertools.count()

    @property
    def now(self) -> float:
        return self.clock.now

    def duration(self, cid: int) -> float:
        """Client ``cid``'s simulated round trip, in virtual seconds."""
        count = self._counts.get(cid)
        if count is None:
            count = self._counts[cid] = int(self.samples(cid))
        assert self.model_bytes is not None
        return client_timing(
            self.time.profiles[cid],
            num_samples=count,
            epochs=self.epochs,
            model_bytes=self.model_bytes,
        ).total

    # -- synchronous rounds ---------------------------------------------------

    def plan_round(self, payload: Any) -> RoundPlan:
        if self.model_bytes is None:
            self.model_bytes = tensor_bytes(payload)
        return plan_round(
            self.time.profiles,
            self.clock.now,
            num_clients=self.num_clients,
            target=self.target,
            over_selection=self.time.over_selection,
            deadline=self.time.deadline,
            sample=self.sample_among,
            duration=self.duration,
        )

    # -- asynchronous steps ---------------------------------------------------

    async def plan_step(
        self, version: int, payload: Any, fail_round: bool, on_outcome: OnOutcome
    ) -> tuple[StepPlan, AsyncScheduler]:
        """The next server update, with every result it needs computed."""
        assert self.scheduler is not None
        if self.model_bytes is None:
            self.model_bytes = tensor_bytes(payload)
        self.versions.setdefault(version, payload)
        while True:
            twin = self.scheduler.copy()
            failed = {k for k, o in self.results.items() if not o.ok}
            plan = twin.plan_step(version, failed)
            bad = [f for f in plan.dropped if f.key in failed]
            if bad and fail_round:
                first = self.results[bad[0].key]
                raise RoundFailedError(
                    f"server update {version}: client {bad[0].cid} failed "
                    f"({first.error}); nothing was applied",
                    tuple(self.results[f.key].error for f in bad),
                )
            needed = [f for f in plan.arrivals if f.key not in self.results]
            if not needed:
                return plan, twin
            # Train the ones needed, and every other client in flight whose
            # result is not known yet (real parallelism), in one session.
            extra = [
                f
                for f in sorted(twin.flights)
                if f.key not in self.results and not f.dropped
            ]
            ready = self._ready(_unique(needed + extra), plan)
            await self._execute(ready, on_outcome)

    def _ready(
        self, flights: list[Flight], plan: StepPlan
    ) -> list[tuple[Flight, ClientState | None]]:
        """The flights that can train now, each with the state it starts from.

        A client sent out again after it arrived earlier in this (not yet
        committed) step starts from the state that arrival left: it waits
        until that arrival's result is known. ``None``: the committed state.
        """
        out: list[tuple[Flight, ClientState | None]] = []
        for flight in flights:
            before = [
                a
                for a in plan.arrivals
                if a.cid == flight.cid and a.finish <= flight.start and a != flight
            ]
            if not before:
                out.append((flight, None))
                continue
            outcome = self.results.get(before[-1].key)
            if outcome is not None:
                out.append((flight, outcome.state))
        return out

    async def _execute(
        self,
        flights: Sequence[tuple[Flight, ClientState | None]],
        on_outcome: OnOutcome,
    ) -> None:
        adapter, states = self.runner.adapter, self.runner.states
        committed = states.get_many([f.cid for f, _ in flights])
        jobs = [
            ClientJob(
                round=f.version,
                slot=slot,
                cid=f.cid,
                device=adapter.device_of(f.cid),
                state=state if state is not None else stored,
                arg=(f.version, None),
                check_finite=self.runner.check_on_workers,
            )
            for slot, ((f, state), stored) in enumerate(
                zip(flights, committed, strict=True)
            )
        ]
        order = [f for f, _ in flights]
        bundle = {v: self.versions[v] for v in sorted({f.version for f in order})}
        outcomes = await self.runner.run_jobs(
            next(self._sessions), bundle, jobs, on_outcome
        )
        for flight, outcome in zip(order, outcomes, strict=True):
            self.results[flight.key] = outcome

    def commit_step(self, plan: StepPlan, twin: AsyncScheduler) -> None:
        assert self.scheduler is not None
        self.scheduler.adopt(twin)
        for flight in plan.arrivals + plan.dropped:
            self.results.pop(flight.key, None)
        self.clock.advance_to(plan.end)
        live = {f.version for f in self.scheduler.flights}
        self.versions = {v: p for v, p in self.versions.items() if v in live}

    # -- checkpoints ---------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "now": self.clock.now,
            "model_bytes": self.model_bytes,
            "plan": None if self.plan is None else self.plan.to_dict(),
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
            state["versions"] = {
                int(v): _plain(p) for v, p in sorted(self.versions.items())
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clock = VirtualClock(float(state["now"]))
        self.model_bytes = state.get("model_bytes")
        plan = state.get("plan")
        self.plan = None if plan is None else RoundPlan.from_dict(plan)
        self.results = {}
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            self.versions = {int(v): _restored(p) for v, p in state["versions"].items()}


def _unique(flights: list[Flight]) -> list[Flight]:
    seen: set[tuple[int, int]] = set()
    out = []
    for f in flights:
        if f.key not in seen:
            seen.add(f.key)
            out.append(f)
    return out


def _attr(handler: object, name: str) -> Any:
    value = getattr(handler, name, None)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(
            f"{type(handler).__name__} has no integer {name}, which simulated time "
            "needs (blazefl.algorithms.FederatedServer has it)"
        )
    return value


def _trainer_epochs(trainer: Any) -> int:
    epochs = getattr(trainer, "epochs", None)
    if not isinstance(epochs, int) or isinstance(epochs, bool):
        raise ConfigurationError(
            "simulated time needs the local epochs: pass SimTime(epochs=...) or "
            "client work with an integer `epochs`"
        )
    return epochs


def _trainer_samples(trainer: Any) -> Callable[[int], int]:
    dataset = getattr(trainer, "dataset", None)
    get = getattr(dataset, "get_dataset", None)
    if not callable(get):
        raise ConfigurationError(
            "simulated time needs each client's number of samples: pass "
            "SimTime(samples=cid -> count) or client work with a `dataset`"
        )
    return lambda cid: len(get("train", cid))


def _plain(payload: Any) -> Any:
    """A payload as checkpointable plain data (a Broadcast becomes a dict)."""
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        from blazefl.algorithms import Broadcast

        if isinstance(payload, Broadcast):
            return {
                "__broadcast__": True,
                "round": payload.round,
                "params": payload.params,
                "extra": dict(payload.extra),
            }
    return payload


def _restored(data: Any) -> Any:
    if isinstance(data, dict) and data.get("__broadcast__"):
        from blazefl.algorithms import Broadcast

        return Broadcast(int(data["round"]), data["params"], dict(data["extra"]))
    return data
