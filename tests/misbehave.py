"""`Misbehave`: the one way the tests make a client misbehave on cue.

``Misbehave(work, control)`` is client work that runs ``work``, unless a cue
armed in the ``control`` folder names the client. A cue says what goes wrong
(the fault), to which client (``cid``, or any) in which round (``round``, or
any), and whether it strikes once (the first client to take the cue consumes
it) or until it is disarmed. Cues are files, because a process worker (or a
Ray actor) cannot see the test's memory; the test arms and disarms them with
`Misbehave.arm` and `Misbehave.disarm`, never by file name. The faults:

- ``raise``: the client raises `ScriptedError`;
- ``hang``: the client waits for its stop flag (a cooperative hang), notes
  that it was stopped (`Misbehave.stopped`), then raises;
- ``stuck``: the client sleeps, ignoring its stop flag, until the cue is
  disarmed (a once-cue: until `HANG_LIMIT_SECONDS`), then raises;
- ``exit``: the process running the client exits with code 3 (``os._exit``);
- ``kill``: that process SIGKILLs itself;
- ``segfault`` / ``abort``: that process dies of SIGSEGV (reading address 0)
  or SIGABRT (`os.abort`), leaving no core file;
- ``write``: the client adds 1 in place to every tensor of its payload, then
  trains as usual (the coordinator must refuse it and keep the write away
  from the handler and the other clients);
- ``sys_exit`` / ``interrupt``: the client calls ``sys.exit(4)`` or raises
  ``KeyboardInterrupt`` itself.

Every client notes its start, with its process id (`Misbehave.started`,
`Misbehave.pid`), so a test can wait until clients really run, or kill the
worker of one. A client that misbehaves first draws from its RNG streams as
real work does, so a wrongly committed state of a failed client shows. A hang
or a sleep gives up after `HANG_LIMIT_SECONDS` by raising, so a fault the
executor fails to stop shows as a wrong error, not as a hung test.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from blazefl._tree import iter_tensors

FAULTS = (
    "raise",
    "hang",
    "stuck",
    "exit",
    "kill",
    "segfault",
    "abort",
    "write",
    "sys_exit",
    "interrupt",
)
HANG_LIMIT_SECONDS = 30.0

# A token per call running in this process. list.append and list.remove are
# atomic with the GIL and without it, and a list pickles where a lock does not
# (the Ray suite ships this module to its workers by value).
_running: list[object] = []


def active_clients() -> int:
    """How many `Misbehave` calls are running right now in this process."""
    return len(_running)


@contextlib.contextmanager
def _count_active() -> Iterator[None]:
    token = object()
    _running.append(token)
    try:
        yield
    finally:
        _running.remove(token)


class ScriptedError(RuntimeError):
    """What a client cued to misbehave raises."""


def _cue_name(fault: str, cid: int | None, round: int | None) -> str:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
    r = "any" if round is None else round
    c = "any" if cid is None else cid
    return f"{fault}-r{r}-c{c}"


def _write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a reader polls for it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass(frozen=True)
class Misbehave:
    """Runs ``work`` for every client, except those a cue in ``control`` names."""

    work: Any
    control: str

    # -- the test's side ---------------------------------------------------

    def arm(
        self,
        fault: str,
        *,
        cid: int | None = None,
        round: int | None = None,
        once: bool = False,
    ) -> Path:
        """Arm a cue; return its file (gone once a once-cue has struck)."""
        path = Path(self.control) / _cue_name(fault, cid, round)
        if once:
            path = path.with_suffix(".once")
        path.touch()
        return path

    def disarm(
        self, fault: str, *, cid: int | None = None, round: int | None = None
    ) -> None:
        """Disarm a cue armed without ``once``."""
        (Path(self.control) / _cue_name(fault, cid, round)).unlink()

    def started(self, round: int) -> set[int]:
        """The clients that started in ``round`` (in any attempt)."""
        return self._noted("started", round)

    def stopped(self, round: int) -> set[int]:
        """The hanging clients of ``round`` that saw their stop flag set."""
        return self._noted("stopped", round)

    def pid(self, round: int, cid: int) -> int | None:
        """The process that started client ``cid`` of ``round`` (None: not yet)."""
        path = Path(self.control) / f"started-r{round}-c{cid}"
        return int(path.read_text()) if path.exists() else None

    def _noted(self, what: str, round: int) -> set[int]:
        prefix = f"{what}-r{round}-c"
        return {
            int(p.name[len(prefix) :]) for p in Path(self.control).glob(f"{prefix}*")
        }

    # -- the client's side -------------------------------------------------

    def __call__(self, ctx: Any, payload: Any) -> Any:
        with _count_active():
            control = Path(self.control)
            fault, cue = self._take(ctx, control)
            # Noted once the cue is taken: a test that kills this process as
            # soon as it sees the note leaves no once-cue for the rerun.
            _write(control / f"started-r{ctx.round}-c{ctx.cid}", str(os.getpid()))
            if fault is None:
                return self.work(ctx, payload)
            ctx.rng.python.random()
            torch.rand(1, generator=ctx.rng.torch_cpu)
            return self._strike(fault, cue, ctx, control, payload)

    def _take(self, ctx: Any, control: Path) -> tuple[str | None, Path | None]:
        """The fault cued for this client, if any; a once-cue is consumed."""
        armed = set(os.listdir(control))
        for fault in FAULTS:
            for cid in (ctx.cid, None):
                for round in (ctx.round, None):
                    name = _cue_name(fault, cid, round)
                    if name in armed:
                        return fault, control / name
                    if f"{name}.once" in armed:
                        with contextlib.suppress(FileNotFoundError):
                            (control / f"{name}.once").unlink()  # first one wins
                            return fault, None
        return None, None

    def _strike(
        self, fault: str, cue: Path | None, ctx: Any, control: Path, payload: Any
    ) -> Any:
        if fault == "raise":
            raise ScriptedError(f"scripted failure of client {ctx.cid}")
        if fault == "write":
            for tensor in iter_tensors(payload):
                tensor.add_(1.0)
            return self.work(ctx, payload)
        if fault == "sys_exit":
            sys.exit(4)
        if fault == "interrupt":
            raise KeyboardInterrupt
        deadline = time.monotonic() + HANG_LIMIT_SECONDS
        if fault == "hang":
            while not ctx.should_stop():
                if time.monotonic() > deadline:
                    raise ScriptedError("the stop flag was never set")
                time.sleep(0.005)
            (control / f"stopped-r{ctx.round}-c{ctx.cid}").touch()
            raise ScriptedError(f"client {ctx.cid} was stopped")
        if fault == "stuck":
            while time.monotonic() < deadline and (cue is None or cue.exists()):
                time.sleep(0.05)
            raise ScriptedError("a stuck client was never killed")
        if fault == "exit":
            os._exit(3)
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        # No core file, whatever the machine's ulimit says.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if fault == "segfault":
            ctypes.string_at(0)
        os.abort()
