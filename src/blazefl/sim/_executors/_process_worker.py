"""The main loop of a process worker (runs in the child).

A worker lives for the whole run. It unpickles the run's work once (models and
data sets it builds are kept in its ``ctx.cache``) and answers ``("ready",
pid)``, or ``("fatal", failure)`` when the work cannot be loaded. Then it
serves the parent's messages:

- ``("work", work_bytes)``: the client work again, in a round in which its
  version changed (see `blazefl._versions`);
- ``("payload", round, payload)``: the round's payload, whose tensors are in
  shared memory; received once per round, mapped once, and copied once into
  this worker's own memory for its clients (`PayloadCopy`: a client that
  writes into it fails, and no write reaches the handler or other workers);
- ``("job", job, (id, buffer, dropped))``: run one client (`run_job`: its log
  lines come back with the outcome), write its result's tensors into the
  shared result buffer ``id`` (sent as ``buffer`` the first time, then mapped
  for as long as the parent's pool keeps it; ``dropped``: the ids it forgot,
  unmapped here) and reply ``("done", outcome, used, packed)``: ``packed``
  says whether the result's tensors were written into the buffer, ``used``
  how many bytes of it they took or would have taken (see `_result_pool`);
- ``("stop",)``: exit, ending what its clients started (see `_group`).
"""

from __future__ import annotations

import functools
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from blazefl.sim._context import StopFlag
from blazefl.sim._devices import WorkerDevice, enable_cuda_determinism, is_cuda
from blazefl.sim._executors._group import end_group, lead_group
from blazefl.sim._executors._job_body import prepare_worker, run_job
from blazefl.sim._executors._orphan import exit_when_orphaned
from blazefl.sim._executors._result_buffers import pack_result
from blazefl.sim._jobs import ClientJob, error_info
from blazefl.sim._payload import PayloadCopy

__all__ = ["worker_main"]


class _Unloadable:
    """Stands for client work that could not be unpickled: every job fails."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, ctx: Any, payload: Any, arg: Any) -> Any:
        raise RuntimeError(
            f"the client work sent for this round could not be loaded: "
            f"{type(self.error).__name__}: {self.error}"
        ) from self.error


def worker_main(
    index: int,
    work_bytes: bytes,
    conn: Connection,
    stop_event: StopFlag,
    torch_threads: int,
    settings: dict[str, Any],
    device: str | None = None,
) -> None:
    """Entry point of a process worker; returns when told to stop or orphaned.

    ``device``: the device this worker is pinned to (None: each job's own).
    """
    # Ctrl-C reaches the whole process group; the parent decides how workers end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lead_group()  # what its clients start ends with it (see `_group`)
    exit_when_orphaned()  # and a killed parent ends them at once
    prepare_worker(torch_threads, settings)
    import torch.multiprocessing  # registers shared-memory reductions

    if is_cuda(device):
        enable_cuda_determinism()  # before this process's first CUDA call
        torch.cuda.set_device(device)
    place = WorkerDevice(device)

    try:
        work = ForkingPickler.loads(work_bytes)
    except Exception as exc:
        conn.send(("fatal", error_info(exc)))
        return
    del work_bytes
    conn.send(("ready", os.getpid()))

    label = f"process-{index}"
    cache: dict[str, Any] = {}
    payload = PayloadCopy(None)
    buffers: dict[int, Any] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            end_group()
            return  # the parent is gone
        kind = message[0]
        if kind == "job":
            job: ClientJob = message[1]
            bid, new, dropped = message[2]
            for gone in dropped:
                buffers.pop(gone, None)
            if new is not None:
                buffers[bid] = new
            buffer = buffers.get(bid) if bid is not None else None
            execute = functools.partial(
                run_job,
                work,
                payload=payload,
                stop_event=stop_event,
                cache=cache,
                worker=label,
                private_state=True,  # unpickled just now: nobody else holds it
            )
            outcome = place.run(job, execute, label)
            used, packed = 0, False
            try:
                if outcome.ok:
                    outcome.result, used, packed = pack_result(outcome.result, buffer)
                buffer = None  # a dropped buffer is unmapped with the next job
                reply = ForkingPickler.dumps(("done", outcome, used, packed))
            except Exception as exc:  # e.g. an unpicklable result
                outcome.result, outcome.state = None, None
                outcome.error = error_info(exc)
                reply = ForkingPickler.dumps(("done", outcome, 0, False))
            conn.send_bytes(reply)
        elif kind == "work":
            # The client work changed (a data set with per-round state). If
            # it cannot be loaded, each client of the round fails with why.
            try:
                work = ForkingPickler.loads(message[1])
            except Exception as exc:
                work = _Unloadable(exc)
        elif kind == "payload":
            # Copied into the last round's copy where nobody still holds it.
            payload = payload.renew(message[2])
        elif kind == "stop":
            end_group()
            return
