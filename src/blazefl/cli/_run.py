"""The async run behind `blazefl run`: events to files and display, checkpoints,
signals, resume.

One task group holds three things: the simulation driven round by round (in
a cancel scope), a consumer of ``sim.events()`` that appends every event to
``events.jsonl``, each finished round to ``metrics.jsonl`` and feeds the
display, and a watcher of SIGINT/SIGTERM (`anyio.open_signal_receiver`) that
cancels the simulation's scope. A cancelled round is not applied (the
coordinator's guarantee), so after a signal the run saves the checkpoint of
the last committed round, the executor is closed by `Simulation.aclose`, and
the process exits with 128 + the signal number.

A checkpoint that cannot be written (disk full, a file size limit, a folder
made read-only) stops the run: `save_checkpoint` leaves the previous
checkpoint intact, the error is recorded in `RunOutcome.checkpoint_error`, and
no second attempt is made on the way out.

After each round the driver waits until the consumer has written that
round's lines, then checkpoints every ``checkpoint_every`` rounds and after
the last. Lines past the checkpoint (a SIGKILL between two checkpoints) are
cut on ``--resume``: those rounds run again.

``after_round`` is the one seam for watching a run from outside: an async
callback awaited with the number of committed rounds once a round's lines are
written and its checkpoint (if due) is saved. It runs inside the run's cancel
scope, so a signal cancels whatever it awaits. The tests use it to pause a run
after round k and interrupt or kill it there (tests/paused_cli.py); ``blazefl
run`` itself passes none.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    contextmanager,
    nullcontext,
    suppress,
)
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread

from blazefl._exceptions import BlazeFLError
from blazefl.cli._build import Built
from blazefl.cli._client_eval import (
    ClientColumns,
    columns_of,
    evaluate_round,
    has_heldout,
)
from blazefl.cli._config import RunConfig, config_digest
from blazefl.cli._files import (
    CHECKPOINT,
    EVENTS,
    METRICS,
)
from blazefl.cli._progress import Display
from blazefl.cli._track import Tracking
from blazefl.sim import (
    ClientFailed,
    ClientFinished,
    EventStream,
    RoundFinished,
    RoundStarted,
    RoundTimed,
    save_checkpoint,
)

__all__ = ["AfterRound", "RunOutcome", "Runner", "metrics_row", "time_columns"]

#: Awaited with the number of committed rounds after each round (see above).
AfterRound = Callable[[int], Awaitable[None]]


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def metrics_row(
    event: RoundFinished, epsilon: float | None = None, *, attacked: bool = False
) -> dict[str, Any]:
    """A finished round as a ``metrics.jsonl`` line; rounds count from 1.

    ``epsilon``: the privacy spent after this round, when DP is on. An
    attacked run (``--attack``) adds ``attack_success_rate`` (on evaluated
    rounds; None on the others); ``test_acc`` is the main-task accuracy.
    """
    row = {
        "round": event.round + 1,
        "train_loss": _finite(event.metrics.get("loss")),
        "test_loss": _finite(event.summary.get("server_loss")),
        "test_acc": _finite(event.summary.get("server_acc")),
        "seconds": round(event.seconds, 4),
        "clients": event.clients,
        "failed": event.failed,
    }
    if attacked:
        row["attack_success_rate"] = _finite(event.summary.get("attack_success_rate"))
    if epsilon is not None:
        row["epsilon"] = epsilon
    return row


def time_columns(event: RoundTimed) -> dict[str, Any]:
    """A timed round's extra ``metrics.jsonl`` columns (only with --profiles)."""
    return {
        "virtual_time": event.virtual_time,
        "stragglers": len(event.stragglers) + len(event.offline),
        "in_flight": event.in_flight,
        "staleness_mean": event.staleness_mean,
        "staleness_max": event.staleness_max,
    }


class _Recorder:
    """Consumes the event stream: files, display, and how far it has got.

    A line that cannot be written (disk full, file-size limit) is recorded in
    `error` and ``on_error`` is called to stop the run: the logs must never
    silently miss a round the checkpoint holds.
    """

    def __init__(
        self,
        folder: Path,
        display: Display,
        rounds_done: int,
        on_error: Callable[[], None],
        tracking: Tracking | None = None,
        *,
        attacked: bool = False,
    ) -> None:
        self.folder = folder
        self.tracking = tracking
        self.attacked = attacked
        self.display = display
        self.done = rounds_done
        self.finished = anyio.Event()
        self.error: OSError | None = None
        self._on_error = on_error
        self._changed = anyio.Event()
        #: ε after k rounds (None without DP); set by the `Runner`.
        self.epsilon: Callable[[int], float | None] = lambda k: None
        #: With --evaluate-clients: the columns each line waits for.
        self.clients = ClientColumns()

    async def consume(self, stream: EventStream) -> None:
        try:
            async with stream:
                await self._write(stream)
        except OSError as exc:
            self.error = exc
            self._on_error()
        finally:
            self.finished.set()

    async def _write(self, stream: EventStream) -> None:
        events_path, metrics_path = self.folder / EVENTS, self.folder / METRICS
        with (
            _opened(events_path) as events,
            _opened(metrics_path) as metrics,
        ):
            timed: RoundTimed | None = None
            async for event in stream:
                _append(events, events_path, json.dumps(event.to_json()))
                if isinstance(event, RoundStarted):
                    self.display.round_started(event.round + 1, len(event.cids))
                elif isinstance(event, ClientFinished | ClientFailed):
                    self.display.client_done()
                    if self.tracking is not None and isinstance(event, ClientFinished):
                        self.tracking.client(event.metrics.get("loss"), event.seconds)
                elif isinstance(event, RoundTimed):
                    timed = event
                elif isinstance(event, RoundFinished):
                    row = metrics_row(
                        event, self.epsilon(event.round + 1), attacked=self.attacked
                    )
                    if timed is not None and timed.round == event.round:
                        row.update(time_columns(timed))
                    clients = await self.clients.of(event.round + 1)
                    if clients is None:
                        continue
                    row.update(clients)
                    _append(metrics, metrics_path, json.dumps(row))
                    self.display.round_finished(row)
                    if self.tracking is not None:
                        self.tracking.round(row)
                    self.done = event.round + 1
                    self._changed.set()
                    self._changed = anyio.Event()

    async def wait_for(self, rounds: int) -> None:
        """Until the lines of the first `rounds` rounds are written."""
        while self.done < rounds:
            await self._changed.wait()


@contextmanager
def _opened(path: Path) -> Iterator[TextIO]:
    """``path`` opened for appending; OS errors name the path."""
    try:
        file = path.open("a", encoding="utf-8")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        yield file
    finally:
        with suppress(OSError):  # the write's own error is the one reported
            file.close()


def _append(file: TextIO, path: Path, line: str) -> None:
    """Write one line and flush it; an OS error names the path."""
    try:
        file.write(line + "\n")
        file.flush()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


class RunOutcome:
    """How the run ended: rounds committed, a signal, or an error.

    ``checkpoint_round`` is the round of the checkpoint the run folder holds;
    ``checkpoint_error`` the `OSError` of a checkpoint that could not be
    written (it may come with a signal or a round's error).
    """

    def __init__(self) -> None:
        self.rounds_done = 0
        #: why the privacy budget stopped the run early (None: it did not)
        self.budget: str | None = None
        self.checkpoint_round: int | None = None
        self.signal: int | None = None
        self.error: BaseException | None = None
        self.checkpoint_error: OSError | None = None
        #: the `OSError` of a log line (events/metrics) that could not be written
        self.log_error: OSError | None = None


class Runner:
    """Drives one run (fresh or resumed) of `built` into `folder`."""

    def __init__(
        self,
        config: RunConfig,
        built: Built,
        folder: Path,
        display: Display,
        *,
        after_round: AfterRound | None = None,
        tracking: Tracking | None = None,
    ) -> None:
        self.config = config
        self.tracking = tracking
        self.sim = built.simulation
        self.built = built
        self.folder = folder
        self.display = display
        self.digest = config_digest(config)
        self.outcome = RunOutcome()
        self.outcome.rounds_done = self.sim.round
        self._after_round = after_round
        # A resumed simulation starts from the checkpoint in the folder.
        self._saved: int | None = self.sim.round or None
        self.privacy = built.server.privacy  # a PrivateAggregation, or None
        self.outcome.checkpoint_round = self._saved

    async def run(self) -> RunOutcome:
        work = anyio.CancelScope()
        recorder = _Recorder(
            self.folder,
            self.display,
            self.sim.round,
            work.cancel,
            self.tracking,
            attacked=self.config.attack is not None,
        )
        if self.privacy is not None:
            recorder.epsilon = self.privacy.epsilon
        if self.config.evaluate_clients:
            recorder.clients.columns = columns_of(has_heldout(self.built))
            recorder.clients.due = self._client_eval_due
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with self._dashboard(), anyio.create_task_group() as tg:
                tg.start_soon(self._watch, signals, work)
                stream = self.sim.events()
                tg.start_soon(recorder.consume, stream)
                try:
                    with work:
                        try:
                            await self.sim.start()
                            await self._drive(recorder)
                        finally:
                            recorder.clients.over()
                            await self.sim.aclose()  # ends the event stream too
                except (BlazeFLError, OSError) as exc:
                    self.outcome.error = exc
                with anyio.CancelScope(shield=True):
                    await recorder.finished.wait()
                    self.outcome.rounds_done = self.sim.round
                    self.outcome.log_error = recorder.error
                    # After a failed log line, the logs lag the simulation:
                    # keep the last checkpoint, which they do cover.
                    # So does a round whose line still waited for its
                    # per-client evaluation: the logs stop before it.
                    if (
                        self._saved != self.sim.round
                        and self.outcome.checkpoint_error is None
                        and recorder.error is None
                        and recorder.done == self.sim.round
                    ):
                        with suppress(OSError):  # recorded in the outcome
                            await self._checkpoint()
                tg.cancel_scope.cancel()  # the signal watcher
        return self.outcome

    def _dashboard(self) -> AbstractAsyncContextManager[Any]:
        """The live dashboard of ``--dashboard`` over this run folder, or nothing."""
        if not self.config.dashboard:
            return nullcontext()
        from blazefl.dashboard import DashboardServer

        return DashboardServer(
            [self.folder],
            host=self.config.dashboard_host,
            port=self.config.dashboard_port,
            announce=self.display.note,
        )

    async def _watch(self, signals: Any, work: anyio.CancelScope) -> None:
        async for signum in signals:
            if self.outcome.signal is None:
                self.outcome.signal = int(signum)
                work.cancel()

    async def _drive(self, recorder: _Recorder) -> None:
        sim, every = self.sim, self.config.checkpoint_every
        while sim.round < self.config.rounds:
            if self.privacy is not None:
                stop = self.privacy.budget_stop(sim.round)
                if stop is not None:
                    self.outcome.budget = stop
                    return
            await sim.run_round()
            if self.config.evaluate_clients and self._client_eval_due(sim.round):
                columns = await evaluate_round(self.built, self.config, self.folder)
                recorder.clients.evaluated(sim.round, columns)
            await recorder.wait_for(sim.round)
            if sim.round % every == 0 or sim.round == self.config.rounds:
                await self._checkpoint()
            if self._after_round is not None:
                await self._after_round(sim.round)

    def _client_eval_due(self, rounds: int) -> bool:
        """Per-client evaluation after ``rounds`` rounds: every
        --evaluate-every rounds and after the last (the last one the privacy
        budget allows, too)."""
        if rounds % self.config.evaluate_every == 0 or rounds == self.config.rounds:
            return True
        return self.privacy is not None and self.privacy.budget_stop(rounds) is not None

    async def _checkpoint(self) -> None:
        """Save the committed state; a failed write is recorded, then raised."""
        state = {
            "sim": self.sim.state_dict(),
            "config": self.config.saved,
            "config_digest": self.digest,
        }
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(
                    save_checkpoint, self.folder / CHECKPOINT, state
                )
            except OSError as exc:
                self.outcome.checkpoint_error = exc
                raise
        self._saved = self.sim.round
        self.outcome.checkpoint_round = self.sim.round
        if self.tracking is not None:
            self.tracking.checkpointed()
