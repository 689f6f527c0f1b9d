"""What a worker outside the coordinator's process does, once per start and
once per client: the one body process workers and Ray actors share.

At start a worker takes the coordinator's numerics (`torch_settings`, taken in
the parent) so that it computes exactly what an in-process worker would. Per
client it runs `execute_job` with a logger that captures the work's log lines
instead of printing them: they come back with the outcome and the parent
re-emits them (`blazefl.sim._logging.replay`), so logs from every executor come
out of one place, under the coordinator's own structlog configuration.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
import structlog.testing
import torch

from blazefl.reproducibility import set_torch_threads
from blazefl.sim._context import StopFlag
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork, execute_job

__all__ = ["prepare_worker", "run_job", "torch_settings"]


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


def prepare_worker(torch_threads: int, settings: dict[str, Any]) -> None:
    """Make this worker compute exactly like the coordinator would."""
    set_torch_threads(torch_threads)
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


def run_job(
    work: JobWork,
    job: ClientJob,
    payload: Any,
    *,
    stop_event: StopFlag,
    cache: dict[str, Any],
    worker: str,
    private_state: bool = False,
) -> JobOutcome:
    """Run one client; its log lines travel back in ``outcome.logs``.

    Each line is the event dict as the work logged it, bound to ``round`` and
    ``cid``, with its level under ``log_level`` (`structlog.testing.LogCapture`).
    ``private_state``: see `execute_job` (true where the job was unpickled).
    """
    capture = structlog.testing.LogCapture()

    def make_logger(job: ClientJob) -> Any:
        # Every level is captured: the parent's configuration filters on replay.
        return structlog.wrap_logger(
            structlog.ReturnLogger(),
            processors=[capture],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        ).bind(round=job.round, cid=job.cid)

    outcome = execute_job(
        work,
        job,
        payload,
        stop_event=stop_event,
        cache=cache,
        worker=worker,
        make_logger=make_logger,
        # No Ctrl-C reaches a worker outside the coordinator's process (a
        # process worker ignores SIGINT): a KeyboardInterrupt or SystemExit
        # there is the client's own, a failed client like any error.
        contain_exits=True,
        private_state=private_state,
    )
    outcome.logs = [dict(entry) for entry in capture.entries]
    return outcome
