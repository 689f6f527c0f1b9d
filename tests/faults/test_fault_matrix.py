"""The fault matrix: every fault, on every executor it can happen on.

Each cell runs the federation undisturbed (the reference, once per module
and executor), then again with one fault injected into one round (a once-cue
of `Misbehave`, so the fault strikes once); checks the state the docs
promise right after the fault; recovers as the policy says (re-run the round,
or ``blazefl run --resume``); compares the final model with the reference bit
for bit where the policy allows it; and checks that nothing is left behind: no
process below the test process, no extra thread or file descriptor, no new
/dev/shm entry held by this process tree (the machine's other programs make
their own), and for ``blazefl run`` none of the run's worker processes nor the
shared memory they mapped. The SIGTERM and EFBIG rows leave the same kind of
checkpoint as the SIGINT and ENOSPC rows, whose cells resume from it. The
two "two runs" rows run the first run as a real process holding its claim
(a paused simulation or ``blazefl run``), refuse the second, SIGKILL the
first (the kernel drops its claim) and resume bitwise.

==========================================  ========  ========  =========
fault                                       inline    threads   processes
==========================================  ========  ========  =========
client raises, fail_round                   cell      cell      cell
client raises, drop (differs by design)     cell      cell      cell
client hangs past client_timeout            n/a [1]   cell      cell
client stuck, ignoring its stop flag        n/a [1]   n/a [2]   cell
worker SIGKILLed mid-client, fail_round     n/a [3]   n/a [3]   cell
worker SIGKILLed mid-client, drop           n/a [3]   n/a [3]   cell
worker segfaults (SIGSEGV)                  n/a [3]   n/a [3]   cell
worker aborts (os.abort, SIGABRT)           n/a [3]   n/a [3]   cell
SIGINT to ``blazefl run``                   cell      cell      cell
SIGTERM to ``blazefl run``                  cell      cell      cell
SIGKILL to ``blazefl run``, then --resume   cell      cell      cell
checkpoint write fails: ENOSPC, round end   cell      cell      cell
checkpoint write fails: EFBIG, at SIGINT    cell      cell      cell
log line write fails: ENOSPC (/dev/full)    cell      cell      cell
two runs on one client-state file           cell      cell      cell
two runs on one run folder                  cell      cell      cell
==========================================  ========  ========  =========

[1] InlineExecutor runs a client on the event loop's own thread and hands it a
    stop flag that nothing sets: a client timeout cannot fire while it runs.
[2] A thread cannot be killed: ThreadExecutor abandons a client that ignores
    its stop flag after a grace period, and the thread runs until the work
    returns (a thread "leak" by design, the reason to use processes).
[3] There is no worker process: the client runs inside the test process, so
    the signal would end the test process itself.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import torch
from fault_fakes import (
    Misbehave,
    SoftmaxWork,
    federation_handler,
    first_sampled,
    quick_processes,
)
from fault_runs import PausedRun, executor_args, outcome, stray_files

from blazefl import InUseError, RoundFailedError
from blazefl.reproducibility import create_client_rng_suite
from blazefl.sim import (
    ClientFailure,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    RoundResult,
    Simulation,
    ThreadExecutor,
    load_checkpoint,
    save_checkpoint,
)
from cli_helpers import SMALL, checkpoint, invoke, wait_until
from leaks import Baseline, children_of, pid_alive

# Every cell runs real CLI processes: the long end-to-end suite (-m slow).
pytestmark = pytest.mark.slow

SEED = 3
EXECUTORS = ("inline", "threads", "processes")
FAULT_ROUND = 1
#: A client of round 1 that also ran in round 0: it has a committed state.
FAULTY = first_sampled(FAULT_ROUND)[1]
#: Generous: an undisturbed client takes milliseconds, even on a busy machine.
CLIENT_TIMEOUT = 3.0
EXIT_CHECKPOINT_WRITE = 74

NO_TIMEOUT_INLINE = (
    "InlineExecutor runs the client on the event loop's thread with a stop "
    "flag nothing sets: a client timeout cannot fire while it runs"
)
NO_THREAD_KILL = (
    "a thread cannot be killed: ThreadExecutor abandons a client that ignores "
    "its stop flag and the thread runs on until the work returns"
)
NO_WORKER_PROCESS = (
    "no worker process: the client runs in the test process, which the signal would end"
)
PROCESSES_ONLY = {"inline": NO_WORKER_PROCESS, "threads": NO_WORKER_PROCESS}


def _executor(kind: str) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "threads":
        return ThreadExecutor(2)
    return quick_processes(2, stop_grace=1.0)


def _same(a: Any, b: Any) -> bool:
    """Bitwise equality of nested state: tensors with torch.equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


# -- references --------------------------------------------------------------


@dataclass
class References:
    """Undisturbed runs, made on first use and shared by the module's cells."""

    tmp: Path
    sims: dict[str, dict[str, Any]] = field(default_factory=dict)
    cli_run: tuple[torch.Tensor, list[dict[str, Any]]] | None = None

    def sim(self, kind: str) -> dict[str, Any]:
        """The final ``Simulation.state_dict()`` of an undisturbed run on ``kind``."""
        if kind not in self.sims:

            async def main() -> dict[str, Any]:
                sim = _simulation(kind, self.tmp / f"ref-{kind}", "fail_round")
                async with sim:
                    results = await sim.run()
                assert [r.failures for r in results] == [(), (), ()]
                return sim.state_dict()

            (self.tmp / f"ref-{kind}").mkdir()
            self.sims[kind] = anyio.run(main)
        return self.sims[kind]

    def cli(self) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """The small `blazefl run` federation, undisturbed, in this process."""
        if self.cli_run is None:
            out = self.tmp / "cli-ref"
            result = invoke("run", *SMALL, "--out", out)
            assert result.exit_code == 0, result.output
            self.cli_run = outcome(out)
        return self.cli_run


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(tmp_path_factory.mktemp("references"))


@dataclass
class Cell:
    """What a scenario gets: the executor, a folder, and the references."""

    kind: str
    tmp: Path
    refs: References
    monkeypatch: pytest.MonkeyPatch


# -- faults in the coordinator ---------------------------------------------


def _work(control: Path) -> Misbehave:
    """The federation's client work, misbehaving as cued in ``control``."""
    return Misbehave(SoftmaxWork(), str(control))


def _simulation(
    kind: str, control: Path, policy: str, timeout: float | None = None
) -> Simulation[Any, Any]:
    return Simulation(
        federation_handler(),
        _work(control),
        executor=_executor(kind),
        seed=SEED,
        on_client_failure=policy,
        min_clients=2,
        client_timeout=timeout,
    )


def _committed(sim: Simulation[Any, Any]) -> dict[int, Any]:
    """Every client's committed state (its initial one if it never committed)."""
    states = {}
    for cid in range(sim.handler.num_clients):
        state = sim.client_state(cid)
        if state is None:
            rng = create_client_rng_suite(SEED, cid).get_state()
            states[cid] = {"rng": rng.to_dict(), "data": {}}
        else:
            states[cid] = {"rng": state.rng.to_dict(), "data": state.data}
    return states


@dataclass(frozen=True)
class SimFault:
    """A fault injected into client ``FAULTY`` of round ``FAULT_ROUND``.

    :param marker: the `Misbehave` fault, cued once for client ``FAULTY``.
    :param failure: (kind, type, message regex) of the expected failed slot.
    :param kill_worker: SIGKILL the worker from the test once the client runs.
    :param replaced: the fault costs the client's worker process (it died or
        was killed after its stop grace), so a fresh one must replace it.
    """

    marker: str
    policy: str
    failure: tuple[str, str, str]
    timeout: float | None = None
    kill_worker: bool = False
    replaced: bool = False

    def __call__(self, cell: Cell) -> None:
        reference = cell.refs.sim(cell.kind)
        baseline = Baseline.take()
        final = anyio.run(self._scenario, cell, baseline)
        assert not baseline.leaks()
        if self.policy == "fail_round":
            assert _same(final, reference)
        else:
            # Dropping a client changes round 1's average, and so every model
            # after it: the one policy under which recovery is not bitwise.
            assert not torch.equal(
                final["handler"]["params"], reference["handler"]["params"]
            )

    async def _scenario(self, cell: Cell, baseline: Baseline) -> dict[str, Any]:
        sim = _simulation(cell.kind, cell.tmp, self.policy, self.timeout)
        async with sim:
            await sim.run_round()
            baseline.watch()  # the workers' semaphores, mapped by name
            pids = sim.executor.pids if cell.kind == "processes" else []
            params = sim.handler.params.clone()
            states = _committed(sim)
            _work(cell.tmp).arm(self.marker, cid=FAULTY, round=FAULT_ROUND, once=True)
            async with anyio.create_task_group() as tg:
                if self.kill_worker:
                    tg.start_soon(self._kill_worker, cell.tmp)
                if self.policy == "fail_round":
                    await self._fails_the_round(sim, params, states)
                else:
                    await self._is_dropped(sim, states)
            baseline.watch()
            if self.replaced:
                self._replaced(sim.executor, pids)
            await sim.run()
            return sim.state_dict()

    async def _fails_the_round(
        self, sim: Simulation[Any, Any], params: torch.Tensor, states: dict[int, Any]
    ) -> None:
        kind, type_, message = self.failure
        with pytest.raises(
            RoundFailedError,
            match=(
                rf"^round {FAULT_ROUND}: 1 of 3 clients failed \(first: client "
                rf"{FAULTY}: {type_}: {message}\); nothing was applied$"
            ),
        ) as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert isinstance(failure, ClientFailure)
        assert (failure.kind, failure.type) == (kind, type_)
        # The documented state: the round was not applied at all.
        assert sim.round == FAULT_ROUND
        assert torch.equal(sim.handler.params, params)
        assert _same(_committed(sim), states)
        # Recovery: the same round again, with the same sampled clients.
        rerun = await sim.run_round()
        assert rerun.failures == ()
        assert list(rerun.cids) == first_sampled(FAULT_ROUND)

    async def _is_dropped(
        self, sim: Simulation[Any, Any], states: dict[int, Any]
    ) -> None:
        kind, type_, message = self.failure
        result: RoundResult = await sim.run_round()
        (failed,) = result.failures
        assert failed.cid == FAULTY
        assert failed.failure is not None
        assert (failed.failure.kind, failed.failure.type) == (kind, type_)
        assert re.match(message, failed.failure.message)
        # The survivors were aggregated and committed; the dropped client not.
        survivors = [c for c in first_sampled(FAULT_ROUND) if c != FAULTY]
        assert [c.cid for c in result.clients if c.ok] == survivors
        assert result.metrics["num_samples"] == 2 * 12
        assert sim.round == FAULT_ROUND + 1
        after = _committed(sim)
        assert _same(after[FAULTY], states[FAULTY])
        assert not any(_same(after[c], states[c]) for c in survivors)

    async def _kill_worker(self, control: Path) -> None:
        work = _work(control)
        with anyio.fail_after(60):
            # A file, not an event.
            while (pid := work.pid(FAULT_ROUND, FAULTY)) is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _replaced(executor: ProcessExecutor, before: list[int]) -> None:
        """The faulty client's worker was killed and replaced; nothing else."""
        after = executor.pids
        assert len(after) == len(before) == 2
        (gone,) = set(before) - set(after)
        assert wait_until(lambda: not pid_alive(gone), 10)


def _died(code: int) -> tuple[str, str, str]:
    return (
        "worker_died",
        "WorkerDiedError",
        rf"worker process process-\d+ \(pid \d+\) exited with code {code} while "
        rf"running client {FAULTY}",
    )


RAISED = ("error", "ScriptedError", rf"scripted failure of client {FAULTY}")
TIMED_OUT = (
    "timeout",
    "ClientTimeoutError",
    rf"client {FAULTY} ran past its {CLIENT_TIMEOUT}s timeout and was stopped",
)


# -- faults of `blazefl run` ----------------------------------------------------


def _resumes_like_the_reference(cell: Cell, folder: Path) -> None:
    result = invoke("run", "--resume", folder)
    assert result.exit_code == 0, result.output
    params, rows = outcome(folder)
    ref_params, ref_rows = cell.refs.cli()
    assert torch.equal(params, ref_params)
    assert rows == ref_rows


def _no_leftovers(run: PausedRun, kind: str) -> None:
    if kind == "processes":
        assert run.children, "the run had no worker process to check"
    assert run.leftovers() == []


@dataclass(frozen=True)
class CliFault:
    """A fault of a whole `blazefl run` (a subprocess, or in this process)."""

    scenario: Callable[[Cell], None]

    def __call__(self, cell: Cell) -> None:
        cell.refs.cli()
        baseline = Baseline.take()
        self.scenario(cell)
        assert not baseline.leaks()


def _interrupted(signum: int, *, resume: bool) -> Callable[[Cell], None]:
    """SIGINT or SIGTERM after round 2: a clean exit, and with ``resume`` the
    recovery (SIGTERM takes the same path to the same checkpoint; resuming
    it again would only cost time)."""

    def scenario(cell: Cell) -> None:
        # No checkpoint is due at round 2: the one there comes from the signal.
        args = [*SMALL, *executor_args(cell.kind), "--checkpoint-every", "5"]
        run = PausedRun(cell.tmp, 2, *args)
        try:
            code = run.stop_with(signum)
            assert code == 128 + signum, run.stderr
            name = signal.Signals(signum).name
            assert (
                f"{name}: interrupted after round 2; the run folder holds the "
                f"checkpoint of round 2"
            ) in run.stderr
            _no_leftovers(run, cell.kind)
        finally:
            run.kill_all()
        assert checkpoint(run.out)["sim"]["round"] == 2
        assert stray_files(run.out) == []
        if resume:
            _resumes_like_the_reference(cell, run.out)

    return scenario


def _killed_then_resumed(cell: Cell) -> None:
    """SIGKILL in round 3 with checkpoints every 2 rounds: resume from round 2."""
    args = [*SMALL, *executor_args(cell.kind), "--checkpoint-every", "2"]
    run = PausedRun(cell.tmp, 3, *args)
    try:
        assert run.stop_with(signal.SIGKILL) == -signal.SIGKILL
        # The orphaned workers see their pipe close and exit by themselves;
        # the resource tracker removes the semaphores the run left.
        _no_leftovers(run, cell.kind)
    finally:
        run.kill_all()
    assert checkpoint(run.out)["sim"]["round"] == 2
    assert stray_files(run.out) == []
    _resumes_like_the_reference(cell, run.out)


def _disk_full_at_round_end(cell: Cell) -> None:
    """The second checkpoint's fsync fails with ENOSPC, as on a full disk."""
    out = cell.tmp / "run"
    real_fsync = os.fsync
    writes: list[str] = []

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.parent == out.resolve() and path.name.startswith(".checkpoint.ckpt."):
            writes.append(path.name)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with cell.monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        result = invoke("run", *SMALL, *executor_args(cell.kind), "--out", out)
    assert result.exit_code == EXIT_CHECKPOINT_WRITE, result.output
    assert (
        f"error: could not write checkpoint {out / 'checkpoint.ckpt'}: No space "
        f"left on device\nthe run stopped after round 2; the run folder still "
        f"holds the checkpoint of round 1;"
    ) in result.stderr
    assert len(writes) == 2  # no second attempt on the way out
    assert checkpoint(out)["sim"]["round"] == 1
    assert stray_files(out) == []
    _resumes_like_the_reference(cell, out)


def _log_write_enospc(cell: Cell) -> None:
    """metrics.jsonl lives on /dev/full, whose every write fails with ENOSPC
    (a real device error): the run stops at the first metrics line, writes no
    checkpoint the logs do not cover, and a resume redoes the run exactly."""
    from blazefl.cli import _run

    out = cell.tmp / "run"
    with cell.monkeypatch.context() as patch:
        patch.setattr(_run, "METRICS", "/dev/full")  # folder / "/dev/full"
        result = invoke("run", *SMALL, *executor_args(cell.kind), "--out", out)
    assert result.exit_code == EXIT_CHECKPOINT_WRITE, result.output
    assert (
        "error: could not write log file /dev/full: No space left on device\n"
        "the run stopped after round 1; the run folder holds no checkpoint yet"
    ) in result.stderr
    assert not (out / "checkpoint.ckpt").exists()
    assert stray_files(out) == []
    _resumes_like_the_reference(cell, out)


def _file_too_large_at_sigint(cell: Cell) -> None:
    """A real EFBIG: the paused run's file size limit is lowered (prlimit)
    below the checkpoint's size, then SIGINT asks it for the checkpoint of
    round 3 (none was due: checkpoints every 2 rounds). Resuming from the
    kept checkpoint is the ENOSPC row's recovery; not repeated here."""
    args = [*SMALL, *executor_args(cell.kind), "--checkpoint-every", "2"]
    run = PausedRun(cell.tmp, 3, *args)
    try:
        path = run.out / "checkpoint.ckpt"
        before = path.read_bytes()
        # Small files (stderr, the logs) still fit; the checkpoint does not.
        limit = len(before) // 2
        assert limit > 16 * 1024
        resource.prlimit(run.pid, resource.RLIMIT_FSIZE, (limit, limit))
        code = run.stop_with(signal.SIGINT)
        assert code == EXIT_CHECKPOINT_WRITE, run.stderr
        assert (
            f"error: could not write checkpoint {path}: File too large\nthe run "
            f"stopped after round 3 (SIGINT); the run folder still holds the "
            f"checkpoint of round 2;"
        ) in run.stderr
        _no_leftovers(run, cell.kind)
    finally:
        run.kill_all()
    assert path.read_bytes() == before
    assert checkpoint(run.out)["sim"]["round"] == 2
    assert stray_files(run.out) == []


# -- two runs on one file or folder -------------------------------------------

STATE_SCRIPT = Path(__file__).with_name("state_file_script.py")
TESTS = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ClaimFault:
    """A second run on what a first run (a real process) holds."""

    scenario: Callable[[Cell], None]

    def __call__(self, cell: Cell) -> None:
        baseline = Baseline.take()
        self.scenario(cell)
        assert not baseline.leaks()


def _holder(what: str, pid: int, command: str) -> str:
    return (
        rf"{what} is in use by another run: pid {pid} on "
        rf"{re.escape(socket.gethostname())}, since \S+ \(.*{command}.*\); one "
        r"run at a time may use a"
    )


def _killed(process: subprocess.Popen[bytes], children: set[int]) -> None:
    """SIGKILL ``process``; its workers notice and exit by themselves."""
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL
    assert wait_until(lambda: not any(map(pid_alive, children)), 20), children


def _two_runs_on_one_state_file(cell: Cell) -> None:
    """A simulation on a client-state file that a running simulation (another
    process) holds is refused at construction, naming the file and that
    process, and the file is left as it was; once the holder is SIGKILLed the
    kernel drops its claim, and its checkpoint resumes bit for bit."""
    reference = cell.refs.sim(cell.kind)
    path, ckpt = cell.tmp / "clients.sqlite", cell.tmp / "ckpt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(TESTS.parent / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")]
        ),
    }
    err = cell.tmp / "holder.stderr"
    with err.open("wb") as stderr:
        holder = subprocess.Popen(
            [sys.executable, str(STATE_SCRIPT), cell.kind, str(path), str(ckpt)],
            stderr=stderr,
            env=env,
        )
    try:
        paused = "paused after round 1"
        assert wait_until(
            lambda: paused in err.read_text() or holder.poll() is not None, 90
        ), err.read_text()
        assert holder.poll() is None, err.read_text()
        children = children_of(holder.pid)
        if cell.kind == "processes":
            assert children, "the holder had no worker process to check"
        rows = _state_rows(path)
        what = rf"^client_state_path '{re.escape(str(path))}'"
        with pytest.raises(
            InUseError, match=_holder(what, holder.pid, "state_file_script")
        ):
            _disk_simulation(cell.kind, path)
        assert holder.poll() is None
        assert _state_rows(path) == rows
        _killed(holder, children)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    async def resume() -> dict[str, Any]:
        sim = _disk_simulation(cell.kind, path)
        sim.load_state_dict(load_checkpoint(ckpt))
        async with sim:
            await sim.run()
        return sim.state_dict()

    final = anyio.run(resume)
    assert final["round"] == reference["round"]
    assert _same(final["handler"], reference["handler"])


def _disk_simulation(kind: str, path: Path) -> Simulation[Any, Any]:
    return Simulation(
        federation_handler(),
        SoftmaxWork(),
        executor=_executor(kind),
        seed=SEED,
        client_state_path=path,
    )


def _state_rows(path: Path) -> list[Any]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT * FROM states ORDER BY cid, version").fetchall()


def _logs(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "metrics.jsonl").read_bytes(), (
        folder / "events.jsonl"
    ).read_bytes()


def _refused_while_held(run: PausedRun, *attempts: list[str]) -> None:
    """Each `blazefl run ATTEMPT` exits 2 naming ``run``; its logs untouched."""
    logs = _logs(run.out)
    for attempt in attempts:
        result = invoke("run", *attempt)
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        what = rf"run folder {re.escape(str(run.out))}"
        assert re.search(_holder(what, run.pid, "paused_cli"), message), message
    assert _logs(run.out) == logs
    assert run.running


def _two_runs_on_one_folder(cell: Cell) -> None:
    """While a run uses its folder, a --resume of it (or a fresh run into it)
    is refused naming that run; after its SIGKILL, a --resume takes the
    folder and a second --resume is refused in turn; the run then resumes
    bit for bit."""
    args = [*SMALL, *executor_args(cell.kind), "--checkpoint-every", "1"]
    first = PausedRun(cell.tmp, 2, *args)
    try:
        _refused_while_held(
            first, ["--resume", str(first.out)], [*SMALL, "--out", str(first.out)]
        )
        assert first.stop_with(signal.SIGKILL) == -signal.SIGKILL
        _no_leftovers(first, cell.kind)
    finally:
        first.kill_all()
    second = PausedRun(
        cell.tmp, 3, "--resume", str(first.out), *executor_args(cell.kind)
    )
    try:
        _refused_while_held(second, ["--resume", str(second.out)])
        assert second.stop_with(signal.SIGINT) == 128 + signal.SIGINT
        _no_leftovers(second, cell.kind)
    finally:
        second.kill_all()
    assert checkpoint(first.out)["sim"]["round"] == 3
    _resumes_like_the_reference(cell, first.out)


# -- the matrix ----------------------------------------------------------------

Scenario = SimFault | CliFault | ClaimFault

#: fault -> (scenario, {executor: why the cell does not apply}).
FAULTS: dict[str, tuple[Scenario, dict[str, str]]] = {
    "client_raises-fail_round": (SimFault("raise", "fail_round", RAISED), {}),
    "client_raises-drop": (SimFault("raise", "drop", RAISED), {}),
    "client_hangs_past_timeout": (
        SimFault("hang", "fail_round", TIMED_OUT, timeout=CLIENT_TIMEOUT),
        {"inline": NO_TIMEOUT_INLINE},
    ),
    "client_stuck_past_timeout": (
        SimFault(
            "stuck", "fail_round", TIMED_OUT, timeout=CLIENT_TIMEOUT, replaced=True
        ),
        {"inline": NO_TIMEOUT_INLINE, "threads": NO_THREAD_KILL},
    ),
    "worker_sigkilled-fail_round": (
        SimFault("hang", "fail_round", _died(-9), kill_worker=True, replaced=True),
        PROCESSES_ONLY,
    ),
    "worker_sigkilled-drop": (
        SimFault("hang", "drop", _died(-9), kill_worker=True, replaced=True),
        PROCESSES_ONLY,
    ),
    "worker_segfaults": (
        SimFault("segfault", "fail_round", _died(-11), replaced=True),
        PROCESSES_ONLY,
    ),
    "worker_aborts": (
        SimFault("abort", "fail_round", _died(-6), replaced=True),
        PROCESSES_ONLY,
    ),
    "run_sigint": (CliFault(_interrupted(signal.SIGINT, resume=True)), {}),
    "run_sigterm": (CliFault(_interrupted(signal.SIGTERM, resume=False)), {}),
    "run_sigkill_then_resume": (CliFault(_killed_then_resumed), {}),
    "checkpoint_enospc_at_round_end": (CliFault(_disk_full_at_round_end), {}),
    "checkpoint_efbig_at_sigint": (CliFault(_file_too_large_at_sigint), {}),
    "log_write_enospc": (CliFault(_log_write_enospc), {}),
    "two_runs_on_one_state_file": (ClaimFault(_two_runs_on_one_state_file), {}),
    "two_runs_on_one_run_folder": (CliFault(_two_runs_on_one_folder), {}),
}

CELLS = [
    pytest.param(
        fault,
        kind,
        id=f"{fault}-{kind}",
        marks=[pytest.mark.skip(reason=f"n/a: {na[kind]}")] if kind in na else [],
    )
    for fault, (_, na) in FAULTS.items()
    for kind in EXECUTORS
]


@pytest.mark.parametrize(("fault", "kind"), CELLS)
def test_fault_matrix(
    fault: str,
    kind: str,
    tmp_path: Path,
    references: References,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the fault: the documented state, bitwise recovery, nothing leaked."""
    scenario, _ = FAULTS[fault]
    scenario(Cell(kind, tmp_path, references, monkeypatch))


def test_failed_checkpoint_write_names_the_checkpoint(tmp_path: Path) -> None:
    """save_checkpoint: a real EFBIG is an OSError naming the checkpoint path;
    the previous checkpoint stays intact and loadable, no temp file is left."""
    path = tmp_path / "checkpoint.ckpt"
    save_checkpoint(path, {"round": 1, "params": torch.zeros(4)})
    before = path.read_bytes()
    # CPython ignores SIGXFSZ, so going past the limit fails the write (EFBIG)
    # instead of killing the process.
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(OSError, match=r"File too large") as info:
            save_checkpoint(path, {"round": 2, "params": torch.zeros(64 * 1024)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.errno == errno.EFBIG
    assert info.value.filename == str(path)
    assert isinstance(info.value.__cause__, OSError)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["round"] == 1
    assert stray_files(tmp_path) == []
