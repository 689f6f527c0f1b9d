"""`blazefl sweep`: the sweep folder, its manifest, and running its runs.

::

    SWEEP/
        manifest.json        the grid, the seeds, each run's setting, config
                             and status; versions and git commit
        runs/NNN-.../        one ordinary run folder per run
        logs/NNN-....log     each run's own output
        summary.csv          one row per setting (blazefl.cli._study)
        summary.md           the same table, for a paper's notes
        accuracy.png         test accuracy per round, 95% bands
        final_acc.png        final accuracy per setting, 95% intervals

Runs go to ``--parallel N`` worker processes (`blazefl.cli._sweep_worker`),
in plan order. Cores are shared out, never oversubscribed: each worker gets
``cores // N`` of them (the CPUs this process may use), pins its torch
threads to that share, and each run's ``--workers`` must fit in it (left
unset, it is lowered to the share; given, a run that would not fit is
refused before anything starts).

A run that fails is recorded as failed and the sweep goes on (exit code 1 at
the end). SIGINT or SIGTERM: the running runs are asked to stop (each saves
its checkpoint, as ``blazefl run`` does), no new run starts, the manifest
records them as interrupted, and the exit code is 128 + the signal. After a
``kill -9`` the workers exit at once (they watch their parent).
``--resume`` reads each run's state from its folder, not from the manifest: a
folder with ``summary.json`` is complete and skipped, one with
``config.toml`` is resumed from its checkpoint (bit for bit, as ``blazefl run
--resume``), any other starts afresh.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any, cast

from blazefl._exceptions import ConfigurationError
from blazefl.cli._files import CONFIG, METRICS, SUMMARY, write_json
from blazefl.cli._sweep_view import RunState, SweepView
from blazefl.cli._sweep_worker import worker_main

__all__ = [
    "MANIFEST",
    "available_cores",
    "entry_status",
    "fresh_states",
    "read_manifest",
    "run_sweep",
    "share_cores",
]

MANIFEST = "manifest.json"
_POLL = 0.25


def available_cores() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def share_cores(
    configs: Sequence[dict[str, Any]],
    parallel: int,
    workers_given: bool,
    cores: int | None = None,
) -> int:
    """Each worker's share of the cores; lowers or refuses ``workers`` to fit.

    Edits ``configs`` (saved run configurations) in place.
    """
    cores = cores or available_cores()
    if parallel > cores:
        raise ConfigurationError(
            f"Invalid value for '--parallel': {parallel} runs at a time need at "
            f"least {parallel} cores; this process may use {cores}"
        )
    share = cores // parallel
    for config in configs:
        if config.get("executor") == "inline" or config.get("ray_address"):
            continue
        workers = int(config.get("workers", 2))
        if workers <= share:
            continue
        if workers_given:
            raise ConfigurationError(
                f"--parallel {parallel} x --workers {workers} needs "
                f"{parallel * workers} cores; this process may use {cores}: lower "
                "--parallel or --workers (each run's workers must fit in its "
                f"share of {share})"
            )
        config["workers"] = share
    return share


def read_manifest(folder: Path) -> dict[str, Any]:
    import json

    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigurationError(
            f"Invalid value for '--resume': {folder} holds no {MANIFEST}; it is "
            "not a blazefl sweep folder"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ConfigurationError(f"{path} is not a blazefl sweep manifest")
    return data


def entry_status(sweep: Path, entry: Mapping[str, Any]) -> str:
    """complete, started (resumable) or pending, from the run folder itself."""
    folder = sweep / entry["folder"]
    if (folder / SUMMARY).is_file():
        return "complete"
    if (folder / CONFIG).is_file():
        return "started"
    return "pending"


def _rounds_done(folder: Path) -> tuple[int, float | None]:
    try:
        lines = (folder / METRICS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0, None
    import json

    done, acc = 0, None
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        done = max(done, int(row.get("round", 0)))
        if isinstance(row.get("test_acc"), float):
            acc = row["test_acc"]
    return done, acc


class _Worker:
    def __init__(self, torch_threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=worker_main, args=(child, torch_threads), daemon=True
        )
        self.process.start()
        child.close()

    def stop(self) -> None:
        with suppress(OSError):  # a worker that already exited
            self.conn.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def run_sweep(
    folder: Path,
    manifest: dict[str, Any],
    parallel: int,
    share: int,
    view: SweepView,
) -> int | None:
    """Run every unfinished run of ``manifest``; None when all ran, else the
    exit code of a signal."""
    entries: list[dict[str, Any]] = manifest["runs"]
    states: list[RunState] = list(view.states)
    todo: deque[int] = deque()
    for i, entry in enumerate(entries):
        status = entry_status(folder, entry)
        done, acc = _rounds_done(folder / entry["folder"])
        states[i].rounds_done, states[i].last_acc = done, acc
        if status == "complete":
            entry["status"] = states[i].status = "complete"
        else:
            entry["status"], entry["resume"] = "pending", status == "started"
            states[i].status = "pending"
            todo.append(i)
    write_json(folder / MANIFEST, manifest)
    stopping: list[int] = []
    busy: dict[Connection, tuple[_Worker, int]] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(signum)
            for worker, _ in busy.values():
                if worker.process.pid is not None:
                    os.kill(worker.process.pid, signal.SIGINT)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workers = [_Worker(share) for _ in range(min(parallel, len(todo)))]
    idle = list(workers)
    try:
        while (todo and not stopping) or busy:
            while idle and todo and not stopping:
                i = todo.popleft()
                worker = idle.pop()
                entry = entries[i]
                job = {
                    "name": entry["name"],
                    "folder": str(folder / entry["folder"]),
                    "config": entry["config"],
                    "resume": entry.pop("resume", False),
                }
                worker.conn.send(job)
                busy[worker.conn] = (worker, i)
                entry["status"] = states[i].status = "running"
                write_json(folder / MANIFEST, manifest)
            for ready in wait(list(busy), timeout=_POLL):
                conn = cast(Connection, ready)
                worker, i = busy.pop(conn)
                code: int
                error: str | None
                try:
                    _, code, error = conn.recv()
                except (EOFError, OSError):
                    code, error = 1, f"worker process died ({worker.process.exitcode})"
                    worker.stop()
                    worker = _Worker(share)
                    workers.append(worker)
                idle.append(worker)
                entry = entries[i]
                done, acc = _rounds_done(folder / entry["folder"])
                states[i].rounds_done, states[i].last_acc = done, acc
                if code == 0:
                    status = "complete"
                elif stopping or code in (130, 143):
                    status = "interrupted"
                else:
                    status = "failed"
                entry.update(status=status, exit_code=code, error=error)
                states[i].status = status
                write_json(folder / MANIFEST, manifest)
                view.finished(states[i], error)
            for i, state in enumerate(states):
                if state.status == "running":
                    state.rounds_done, state.last_acc = _rounds_done(
                        folder / entries[i]["folder"]
                    )
            view.refresh()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for worker in workers:
            worker.stop()
    for i in todo:
        entries[i].pop("resume", None)
    write_json(folder / MANIFEST, manifest)
    return 128 + stopping[0] if stopping else None


def fresh_states(manifest: Mapping[str, Any]) -> list[RunState]:
    """The view's state of every run before the sweep looks at the folders."""
    return [
        RunState(e["name"], "pending", int(e["config"]["rounds"]), 0)
        for e in manifest["runs"]
    ]
