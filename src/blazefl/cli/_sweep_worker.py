"""A sweep worker: a spawned process that runs the sweep's runs, one at a time.

Each of ``--parallel N`` workers lives for the whole sweep (torch is imported
once per worker, not once per run) and runs a run exactly as ``blazefl run``
does, through `blazefl.cli._execute.execute`, into the run's own folder;
its stdout and stderr go to ``SWEEP/logs/<run>.log`` (beside the run folder,
not in it: a run writes only into a folder of its own). A run that fails is
reported with its exit code and error, and the worker takes the next one.

Cores: the worker pins torch's intra-op threads of its process to its share
of the machine (``cores // N``); the run's executor then runs its
``--workers`` clients with one torch thread each (the executors' default),
and the sweep keeps ``--workers`` within the share (`blazefl.cli._sweep`).

A worker exits within `POLL_SECONDS` of its sweep's death (``kill -9``):
`exit_when_orphaned` watches the parent pid, so no orphaned run goes on
writing into a folder that ``--resume`` will continue.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["Job", "log_path", "worker_main"]


def log_path(folder: Path) -> Path:
    """Where the output of the run in ``SWEEP/runs/NAME`` goes: SWEEP/logs/NAME.log."""
    return folder.parent.parent / "logs" / f"{folder.name}.log"


#: What the sweep sends: the run's folder, its saved config, whether to resume.
Job = dict[str, Any]


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (and sys.stdout/err) appended to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _run(job: Job) -> tuple[int, str | None]:
    from blazefl._exceptions import BlazeFLError
    from blazefl.cli._execute import execute
    from blazefl.cli._resolve import resolve

    folder = Path(job["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    log = log_path(folder)
    log.parent.mkdir(exist_ok=True)
    with _output_to(log):
        try:
            config = resolve({**job["config"], "quiet": True}, {}, "the manifest")
            code = execute(config, folder, resume=bool(job["resume"]))
        except KeyboardInterrupt:
            return 130, "interrupted before the run started"
        except BlazeFLError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2, str(exc)
        except Exception as exc:  # a run's own bug: record it, take the next
            traceback.print_exc()
            return 1, f"{type(exc).__name__}: {exc}"
    if code == 0:
        return 0, None
    lines = log.read_text(encoding="utf-8").strip().splitlines()
    return code, lines[-1] if lines else f"exit code {code}"


def worker_main(conn: Connection, torch_threads: int) -> None:
    """Serve jobs from ``conn`` until it sends None or closes."""
    from blazefl.reproducibility import set_torch_threads
    from blazefl.sim._executors._orphan import exit_when_orphaned

    exit_when_orphaned()
    set_torch_threads(torch_threads)
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            code, error = _run(job)
            conn.send((job["name"], code, error))
    except KeyboardInterrupt:  # Ctrl-C between two runs
        return
