"""The main loop of a process worker (runs in the child).

A worker lives for the whole run. It unpickles the run's work once (models and
data sets it builds are kept in its ``ctx.cache``), then serves messages:

- ``("payload", round, payload)``: the round's payload, whose tensors are in
  shared memory; received once per round and read in place;
- ``("buffer", buffer)``: this worker's shared result buffer, mapped once
  (again only when it has to grow);
- ``("job", job)``: run one client, reply ``("done", outcome)``;
- ``("stop",)``: exit.

Log lines the work emits are captured and returned with the outcome; the parent
logs them, so logs from every executor come out of one place.
"""

from __future__ import annotations

import logging
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

import structlog
import torch

from blazefl.reproducibility import set_torch_threads
from blazefl.sim._context import StopFlag
from blazefl.sim._executors._result_buffers import pack_result
from blazefl.sim._jobs import ClientJob, error_info, execute_job

__all__ = ["worker_main"]


def _capturing_logger(sink: list[dict[str, Any]], job: ClientJob) -> Any:
    def collect(_: Any, method: str, event_dict: Any) -> Any:
        event_dict["level"] = method
        sink.append(dict(event_dict))
        raise structlog.DropEvent

    return structlog.wrap_logger(
        structlog.PrintLogger(),
        processors=[collect],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    ).bind(round=job.round, cid=job.cid)


def torch_settings() -> dict[str, Any]:
    """The parent's numerics settings that a spawned child would not inherit."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": (
            torch.is_deterministic_algorithms_warn_only_enabled()
        ),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def _apply_torch_settings(settings: dict[str, Any]) -> None:
    wanted = (settings["deterministic_algorithms"], settings["deterministic_warn_only"])
    current = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if wanted != current:
        # Only when it changes anything: the first call imports torch._dynamo
        # and sympy, about 1.4 s per worker start.
        torch.use_deterministic_algorithms(wanted[0], warn_only=wanted[1])
    torch.backends.cudnn.deterministic = settings["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    torch.backends.cudnn.allow_tf32 = settings["cudnn_allow_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = settings["matmul_allow_tf32"]
    torch.set_float32_matmul_precision(settings["float32_matmul_precision"])


def worker_main(
    index: int,
    work_bytes: bytes,
    conn: Connection,
    stop_event: StopFlag,
    torch_threads: int,
    settings: dict[str, Any],
) -> None:
    """Entry point of a process worker; returns when told to stop or orphaned."""
    # Ctrl-C reaches the whole process group; the parent decides how workers end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_torch_threads(torch_threads)
    # A worker computes exactly like the parent would: same determinism flags.
    _apply_torch_settings(settings)
    import torch.multiprocessing  # noqa: F401  (registers shared-memory reductions)

    try:
        work = ForkingPickler.loads(work_bytes)
    except Exception as exc:
        conn.send(("fatal", error_info(exc)))
        return
    del work_bytes
    conn.send(("ready", os.getpid()))

    label = f"process-{index}"
    cache: dict[str, Any] = {}
    payload: Any = None
    buffer: Any = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        kind = message[0]
        if kind == "job":
            job: ClientJob = message[1]
            logs: list[dict[str, Any]] = []
            outcome = execute_job(
                work,
                job,
                payload,
                stop_event=stop_event,
                cache=cache,
                worker=label,
                make_logger=lambda j, sink=logs: _capturing_logger(sink, j),  # type: ignore[misc]
            )
            outcome.logs = logs
            used, packed = 0, False
            try:
                if outcome.ok:
                    outcome.result, used, packed = pack_result(outcome.result, buffer)
                reply = ForkingPickler.dumps(("done", outcome, used, packed))
            except Exception as exc:  # e.g. an unpicklable result
                outcome.result, outcome.state = None, None
                outcome.error = error_info(exc)
                reply = ForkingPickler.dumps(("done", outcome, 0, False))
            conn.send_bytes(reply)
        elif kind == "payload":
            payload = None  # drop the old mapping before taking the new one
            payload = message[2]
        elif kind == "buffer":
            buffer = message[1]
        elif kind == "stop":
            return
