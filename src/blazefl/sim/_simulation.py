"""`Simulation`: the async coordinator users drive.

A round: ask the handler for the sampled clients and the payload (in a worker
thread: the handler's code may be slow), or with simulated time plan the round
on the virtual clock; then run it (`blazefl.sim._sync_round`, or one
asynchronous server update, `blazefl.sim._async_round`). Nothing is changed
until the round commits, so a cancelled, timed-out or failed round leaves the
simulation exactly as it was, and the next `run_round` runs the same round
again with the same sampled clients.
"""

from __future__ import annotations

import os
import sysconfig
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
import structlog.contextvars

from blazefl._exceptions import (
    ConfigurationError,
    SimulationFinishedError,
)
from blazefl._validate import check_int, check_number, check_seed
from blazefl.sim._adapters import adapt, check_executor, default_executor
from blazefl.sim._async_round import run_async_update
from blazefl.sim._context import ClientState
from blazefl.sim._devices import check_simulation_device
from blazefl.sim._engine import RoundRunner
from blazefl.sim._evaluate_clients import evaluate_between_rounds
from blazefl.sim._evaluation import ClientEvaluation, EvaluatingWork, evaluation_of
from blazefl.sim._events import (
    Event,
    EventHub,
    EventStream,
    client_event,
)
from blazefl.sim._executors._base import Executor
from blazefl.sim._gil import GilWatch
from blazefl.sim._handler import BoundHandler, ServerHandler
from blazefl.sim._jobs import JobOutcome, JobWork
from blazefl.sim._logging import get_logger, replay
from blazefl.sim._policy import FailurePolicy, RoundPolicy
from blazefl.sim._results import RoundResult
from blazefl.sim._sim_state import load_simulation_state, simulation_state
from blazefl.sim._states import make_store
from blazefl.sim._sync_round import run_sync_round, sample_round
from blazefl.sim._timed import TimedRounds, VersionedWork
from blazefl.simtime._config import SimTime

__all__ = ["Simulation"]

UplinkT = TypeVar("UplinkT")
DownlinkT = TypeVar("DownlinkT")


class Simulation(Generic[UplinkT, DownlinkT]):
    """Runs a federation round by round on an executor.

    ``handler`` is a BlazeFL server handler (``sample_clients``,
    ``downlink_package``, ``load``, ``is_stopped``). ``trainer`` is native
    client work ``work(ctx, payload) -> uplink`` or a BlazeFL client trainer.

    :param executor: where clients run; by default what the trainer asks for
        (its ``num_parallels`` threads or processes), else `InlineExecutor`.
    :param seed: the run seed, an integer in [0, 2**63) (the one bound of
        every entry point); each client's RNG suite derives from (seed, cid).
    :param device: the torch device for native work (``"cuda"`` spreads
        clients over the GPUs by id); an executor's ``devices`` overrides it
        (docs/gpu.md).
    :param client_timeout: seconds one client may run before it is stopped and
        recorded as failed.
    :param round_timeout: seconds a whole round may take; past it the round is
        aborted (nothing applied) and `TimeoutError` is raised.
    :param on_client_failure: ``"fail_round"`` (any failed client aborts the
        round with `RoundFailedError`) or ``"drop"`` (aggregate the survivors,
        which needs a handler with ``load_round(packages)``).
    :param min_clients: with ``"drop"``, the fewest survivors a round needs.
    :param client_state_path: keep committed client states (RNG suites,
        algorithm state) in a SQLite file at this path instead of in memory,
        for federations whose touched clients would not fit in memory (about
        9 KB each); memory then stays proportional to one round's clients.
        Checkpoints refer to the file rather than copy it, so keep it next to
        them (see docs/scale.md). The file is claimed by one simulation at a
        time (a second one raises `InUseError`), and every stored state is
        checked by digest when read (`IntegrityError`).
    :param evaluate_every: call the handler's ``get_summary()`` (for the
        built-in servers a full evaluation on the test split) after every
        K-th round and after the last; ``0`` never evaluates, which also lets
        a handler without a test split run. Its result is the round's
        ``summary`` (``{}`` in rounds without one). Evaluation draws no
        randomness, so the schedule never changes training results.
    :param time: a `blazefl.simtime.SimTime`: run on the virtual clock, with
        device profiles, deadlines and over-selection, or asynchronously
        (FedBuff, FedAsync); each ``run_round`` is then one server update.
        See docs/simulated-time.md. Without it nothing is simulated.

    Use it as ``async with Simulation(...) as sim: await sim.run()``.
    """

    def __init__(
        self,
        handler: ServerHandler[UplinkT, DownlinkT],
        trainer: Any,
        *,
        executor: Executor | None = None,
        seed: int = 0,
        device: str = "cpu",
        client_timeout: float | None = None,
        round_timeout: float | None = None,
        on_client_failure: FailurePolicy = "fail_round",
        min_clients: int = 1,
        client_state_path: str | os.PathLike[str] | None = None,
        evaluate_every: int = 1,
        time: SimTime | None = None,
    ) -> None:
        bound = BoundHandler.of(handler)
        self._policy = RoundPolicy.of(on_client_failure, min_clients, bound)
        if round_timeout is not None:
            round_timeout = check_number("round_timeout", round_timeout, unit="seconds")
        seed = check_seed("seed", seed)
        self._evaluate_every = check_int("evaluate_every", evaluate_every, minimum=0)
        adapter = adapt(trainer, check_simulation_device(device))
        if executor is None:
            executor = default_executor(trainer)
        # Before anything is built (the client-state store may be a file).
        check_executor(adapter, executor)
        self.handler = handler
        self._handler = bound
        self.trainer = trainer
        self.executor = executor
        self._runner = RoundRunner(
            adapter,
            self.executor,
            make_store(seed, client_state_path),
            client_timeout=client_timeout,
            check_uplink=bound.check_uplink,
        )
        if time is not None and not isinstance(time, SimTime):
            raise ConfigurationError(
                f"time must be a blazefl.simtime.SimTime, got {time!r}"
            )
        self._time = (
            None
            if time is None
            else TimedRounds(time, handler, trainer, seed, self._runner)
        )
        self._round_timeout = round_timeout
        self._log = get_logger()
        self._hub = EventHub(self._log)
        self._round = 0
        self._pending: tuple[list[int], Any] | None = None
        self._lock: anyio.Lock | None = None
        self._gil = GilWatch()
        #: evaluation sessions so far: each gets its own (negative) index
        self._evaluations = 0

    # -- lifecycle ---------------------------------------------------------

    @property
    def round(self) -> int:
        """How many rounds this simulation has committed."""
        return self._round

    @property
    def now(self) -> float | None:
        """The virtual clock in seconds (None without simulated time)."""
        return None if self._time is None else self._time.now

    @property
    def in_flight(self) -> int | None:
        """Clients training between server updates (async mode; 0 in sync
        mode, None without simulated time)."""
        if self._time is None:
            return None
        scheduler = self._time.scheduler
        return 0 if scheduler is None else scheduler.in_flight

    async def run_until(self, t: float) -> list[RoundResult]:
        """Run rounds while the virtual clock is before ``t`` (and the handler
        is not stopped); a round starting before ``t`` may end after it."""
        if self._time is None:
            raise ConfigurationError(
                "run_until() needs simulated time: build the Simulation with "
                "time=SimTime(...)"
            )
        t = check_number("t", t, allow_zero=True, unit="virtual seconds")
        results: list[RoundResult] = []
        while not self.handler.is_stopped() and self._time.now < t:
            results.append(await self.run_round())
        return results

    @property
    def running(self) -> bool:
        return self.executor.running

    def client_state(self, cid: int) -> ClientState | None:
        """A copy of client ``cid``'s committed state, or None if never sampled.

        Read-only by construction: mutating the copy changes nothing.
        """
        states = self._runner.states
        return states.get(cid).copy() if cid in states else None

    async def start(self) -> None:
        """Start the executor's workers (what ``async with`` does on entry)."""
        self._lock = anyio.Lock()
        if self._hub.closed:  # started again after a close
            self._hub = EventHub(self._log)
        gil_at_start = self._gil.restart()
        # First: a client-state file claimed by another run stops the start
        # before any worker exists.
        await anyio.to_thread.run_sync(self._runner.states.open)
        work: JobWork = self._runner.adapter.work
        if self._time is not None and self._time.scheduler is not None:
            work = VersionedWork(work)
        evaluate = evaluation_of(self._runner.adapter, self.executor)
        if not isinstance(evaluate, str):
            work = EvaluatingWork(work, evaluate)
        try:
            await self.executor.start(work)
        except BaseException:
            self._runner.states.close()
            raise
        self._log.info(
            "simulation_started",
            **self.executor.describe(),
            free_threaded_build=bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            gil_enabled=gil_at_start,
            seed=self._runner.states.seed,
        )

    async def aclose(self) -> None:
        """Stop the workers and end every event stream."""
        try:
            with anyio.CancelScope(shield=True):
                await self.executor.aclose()
        finally:
            self._runner.states.close()
            self._hub.close()

    async def __aenter__(self) -> Simulation[UplinkT, DownlinkT]:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- checkpoints ---------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the next round reads, as plain data and tensors.

        The handler's ``state_dict()`` (model, algorithm state, server RNG,
        round), every client's state (RNG suite and state dict), the round
        counter, and the sampled clients of a round that was attempted but
        not committed. Write it with `save_checkpoint`; a simulation restored
        from it continues bit for bit as if it had never stopped. Call it
        between rounds.
        """
        return simulation_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the next round is the one after it."""
        load_simulation_state(self, state)

    def events(self) -> EventStream:
        """Subscribe to this simulation's events from now on."""
        return self._hub.subscribe()

    # -- running -----------------------------------------------------------

    async def run(self, rounds: int | None = None) -> list[RoundResult]:
        """Run rounds until the handler is stopped (or ``rounds`` more ran)."""
        if rounds is not None and (
            isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0
        ):
            raise ConfigurationError(
                f"rounds must be an integer >= 0 or None, got {rounds!r}"
            )
        results: list[RoundResult] = []
        while not self.handler.is_stopped() and (
            rounds is None or len(results) < rounds
        ):
            results.append(await self.run_round())
        return results

    def run_sync(
        self, rounds: int | None = None, *, backend: str = "asyncio"
    ) -> list[RoundResult]:
        """Start, run and close in a fresh event loop: the entry for scripts
        (in a notebook, ``async with sim: await sim.run()`` instead)."""
        if _loop_running():
            raise ConfigurationError(
                "run_sync() starts an event loop, but one already runs in this "
                "thread (a notebook?): use `async with sim: await sim.run()`"
            )

        async def main() -> list[RoundResult]:
            async with self:
                return await self.run(rounds)

        return anyio.run(main, backend=backend)

    async def run_round(self) -> RoundResult:
        """Run one round and commit it; return what happened.

        Raises `RoundFailedError` when the failure policy rejects the round,
        `TimeoutError` past ``round_timeout``, and propagates cancellation; in
        all three cases nothing of the round was applied.
        """
        if self._lock is None or not self.executor.running:
            raise ConfigurationError(
                "the simulation is not started: use `async with Simulation(...) as "
                "sim:` (or `await sim.start()`) before run_round()"
            )
        async with self._lock:
            if self._time is not None and self._time.scheduler is not None:
                with structlog.contextvars.bound_contextvars(round=self._round):
                    return await run_async_update(self)
            if self._pending is None:
                if self.handler.is_stopped():
                    raise SimulationFinishedError(
                        f"the handler reports training is over after {self._round} "
                        "rounds (is_stopped() is True)"
                    )
                self._pending = await anyio.to_thread.run_sync(sample_round, self)
            cids, payload = self._pending
            with structlog.contextvars.bound_contextvars(round=self._round):
                return await run_sync_round(self, cids, payload)

    async def evaluate_clients(
        self,
        cids: Any = None,
        *,
        chunk_size: int | None = None,
        threshold: float = 0.5,
    ) -> ClientEvaluation:
        """Measure clients on their own test data with the current models.

        Runs the work's ``evaluate_client(ctx, payload)`` (e.g.
        `blazefl.algorithms.FederatedClient.evaluate_client`) for every
        client of ``cids`` (default: ``range(handler.num_clients)``) on the
        executor's workers, ``chunk_size`` clients at a time (default 16 per
        worker), with the handler's current ``downlink_package()``. Each
        client reads its committed ``ctx.state`` and draws from an
        evaluation RNG suite of (seed, cid, round): nothing is committed and
        no training stream advances, so training is the same with or without
        it (see `blazefl.sim._evaluation`). Call it between rounds; it
        publishes a `ClientsEvaluated` event whose ``stats`` use
        ``threshold`` for ``client_acc_above``.

        A client whose evaluation fails is counted in ``failed`` and left
        out; `EvaluationFailedError` when every client failed.
        """
        return await evaluate_between_rounds(
            self, cids, chunk_size=chunk_size, threshold=threshold
        )

    def _aggregate(
        self, index: int, packages: list[Any], partial: bool, fold: Any
    ) -> dict[str, Any]:
        """Apply round ``index`` to the handler (with the round's fold) and
        evaluate if it is due (every ``evaluate_every`` rounds, and after the
        last); in a worker thread."""
        self._handler.aggregate(packages, partial=partial, fold=fold)
        return self._summary_if_due(index)

    def _summary_if_due(self, index: int) -> dict[str, Any]:
        every = self._evaluate_every
        if every and ((index + 1) % every == 0 or self.handler.is_stopped()):
            return self._handler.summary()
        return {}

    # -- events ------------------------------------------------------------

    def _on_outcome(self, outcome: JobOutcome) -> None:
        if outcome.logs:
            replay(outcome.logs)
        self._emit(client_event(self._round, outcome))

    def _emit(self, event: Event) -> None:
        self._hub.publish(event)


def _loop_running() -> bool:
    try:  # asyncio or trio (anyio raises a RuntimeError subclass when neither)
        return anyio.get_current_task() is not None
    except RuntimeError:
        return False
