"""Per-client evaluation: a second kind of job on the run's executor.

`Simulation.evaluate_clients` measures every client (or the ones named) on
its own test data, on the same workers that train: the run's work is started
wrapped in `EvaluatingWork`, and a job whose argument is `EVALUATE` calls
the work's ``evaluate_client(ctx, payload)`` instead of training. So nothing
new is started, pickled or shipped per evaluation: the worker's cached model
is reused, the payload goes to the workers once per evaluation.

What an evaluation job may depend on, and what it may not change:

- ``ctx.state`` is a copy of the client's committed state (read it: Ditto's
  personal model, FedPer's head); whatever the evaluation writes there is
  discarded, never committed, so evaluating never changes training;
- ``ctx.rng`` is an evaluation RNG suite derived from (seed, `EVAL_STREAM`,
  cid, round), separate from the client's training stream, which is neither
  read nor advanced: a fine-tuning step at evaluation is reproducible and
  training draws the same numbers with or without it;
- clients run in chunks of ``chunk_size``: at most that many jobs (each with
  its copy of a client state) exist at once, and only the small metric dict
  of each client is kept, so memory does not grow with the federation.

A client whose evaluation fails (raises, times out, its worker dies, returns
something that is not a mapping of numbers) is counted in
`ClientEvaluation.failed` and left out of the statistics; the evaluation
fails as a whole (`EvaluationFailedError`) only when every client failed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from blazefl._client_stats import accuracy_stats
from blazefl._exceptions import ClientTimeoutError, ConfigurationError
from blazefl._versions import version_of
from blazefl.reproducibility import create_rng_suite, derive_seed
from blazefl.sim._context import ClientContext, ClientState
from blazefl.sim._executors._base import Executor, RoundSession
from blazefl.sim._jobs import (
    ClientFailure,
    ClientJob,
    JobOutcome,
    JobWork,
    error_info,
    recorded,
)
from blazefl.sim._logging import replay
from blazefl.sim._states import ClientStateStore

__all__ = [
    "EVALUATE",
    "EVAL_STREAM",
    "ClientEvaluation",
    "EvaluatingWork",
    "check_chunk_size",
    "evaluation_of",
    "evaluation_rng",
    "run_evaluation",
]

#: The first key element of every evaluation stream: ``derive_seed(seed,
#: EVAL_STREAM, cid, round)``. Training streams are ``derive_seed(seed, cid)``
#: (one key element), so the two never share a stream.
EVAL_STREAM = 0x6576616C  # "eval"

#: Clients evaluated per chunk when the caller names no chunk size, per worker.
CHUNK_PER_WORKER = 16


@dataclass(frozen=True, slots=True)
class _Evaluate:
    """The job argument that makes a job an evaluation job."""

    def __repr__(self) -> str:
        return "EVALUATE"


EVALUATE = _Evaluate()


class EvaluatingWork:
    """The run's work, which also answers evaluation jobs.

    A job whose argument is `EVALUATE` runs ``evaluate(ctx, payload)``; any
    other job runs the wrapped work unchanged, so training is untouched.
    """

    __slots__ = ("evaluate", "work")

    def __init__(self, work: JobWork, evaluate: Callable[..., Any]) -> None:
        self.work = work
        self.evaluate = evaluate

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        if isinstance(arg, _Evaluate):
            return self.evaluate(ctx, payload)
        return self.work(ctx, payload, arg)

    def __blazefl_version__(self) -> Hashable:
        return version_of(self.work)

    def __getstate__(self) -> tuple[JobWork, Callable[..., Any]]:
        return self.work, self.evaluate

    def __setstate__(self, state: tuple[JobWork, Callable[..., Any]]) -> None:
        self.work, self.evaluate = state


def evaluation_rng(seed: int, cid: int, round: int) -> Any:
    """Client ``cid``'s evaluation RNG suite state at ``round`` (see above)."""
    return create_rng_suite(derive_seed(seed, EVAL_STREAM, cid, round)).get_state()


@dataclass(frozen=True, slots=True)
class ClientEvaluation:
    """What `Simulation.evaluate_clients` measured, client by client.

    ``round`` is the number of committed rounds when it ran (the model of
    round ``round``, 1-based, or the initial model at 0); ``cids`` and
    ``metrics`` list the clients that were evaluated, in the order asked
    (each a dict such as ``FederatedClient.evaluate_client`` returns: ``acc_
    global``, ``loss_global``, ``acc_personal``, ``loss_personal``,
    ``num_test_samples``); ``failures`` the clients that failed, with why.
    `stats` gives the spread (`blazefl.sim.accuracy_stats`).
    """

    round: int
    cids: tuple[int, ...]
    metrics: tuple[Mapping[str, float], ...]
    failures: tuple[tuple[int, ClientFailure], ...] = ()
    seconds: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """How many clients' evaluations failed (left out of `metrics`)."""
        return len(self.failures)

    def values(self, key: str) -> list[float]:
        """``key``'s value for every evaluated client that reports it, in order."""
        return [float(m[key]) for m in self.metrics if key in m]

    def own_accuracies(self) -> list[float]:
        """Each client's accuracy with its own model: ``acc_personal`` where
        the algorithm personalizes, else ``acc_global`` (clients without test
        data report neither and are left out)."""
        return [
            float(m.get("acc_personal", m["acc_global"]))
            for m in self.metrics
            if "acc_global" in m
        ]

    def stats(self, threshold: float = 0.5) -> dict[str, Any]:
        """The spread (`accuracy_stats`) as ``metrics.jsonl`` reports it.

        ``client_acc_*`` over each client's own model (`own_accuracies`),
        ``client_global_acc_*`` over the global model on the same clients
        (equal to the former when the algorithm does not personalize), and
        ``client_eval_failed``.
        """
        return {
            **accuracy_stats(
                self.own_accuracies(), threshold=threshold, prefix="client_acc"
            ),
            **accuracy_stats(
                self.values("acc_global"),
                threshold=threshold,
                prefix="client_global_acc",
            ),
            "client_eval_failed": self.failed,
        }


def _checked(cid: int, result: Any) -> dict[str, float]:
    """The metric dict of one evaluation, or a `TypeError` naming the client."""
    if not isinstance(result, Mapping):
        raise TypeError(
            f"evaluate_client for client {cid} returned {type(result).__name__}; "
            "expected a dict of metric name -> number"
        )
    out: dict[str, float] = {}
    for key, value in result.items():
        if (
            not isinstance(key, str)
            or isinstance(value, bool)
            or not isinstance(value, int | float)
        ):
            raise TypeError(
                f"evaluate_client for client {cid} returned {key!r}: {value!r}; "
                "expected str keys and int or float values"
            )
        out[key] = float(value)
    return out


def _chunks(cids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(cids), size):
        yield cids[start : start + size]


@dataclass
class _Collected:
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    failures: dict[int, ClientFailure] = field(default_factory=dict)


async def run_evaluation(
    executor: Executor,
    states: ClientStateStore,
    session_index: int,
    payload: Any,
    cids: Sequence[int],
    *,
    job_round: int,
    device_of: Callable[[int], str],
    chunk_size: int,
    client_timeout: float | None,
) -> tuple[list[tuple[int, dict[str, float]]], list[tuple[int, ClientFailure]]]:
    """Evaluate ``cids`` in one executor session, ``chunk_size`` at a time.

    Returns the successes and the failures, each in the order of ``cids``.
    ``session_index`` names the session (it must differ from every training
    round's index: the executors share a payload once per index).
    """
    seed = states.seed
    collected = _Collected()
    admit = anyio.Semaphore(executor.max_workers)
    async with executor.round(session_index, payload) as session:
        slot = 0
        for part in _chunks(cids, chunk_size):
            data = states.committed_data(part)
            jobs = []
            for cid, committed in zip(part, data, strict=True):
                jobs.append(
                    ClientJob(
                        round=job_round,
                        slot=slot,
                        cid=cid,
                        device=device_of(cid),
                        state=ClientState(
                            evaluation_rng(seed, cid, job_round), committed
                        ),
                        arg=EVALUATE,
                    )
                )
                slot += 1
            session.expect(jobs)
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(_one, session, admit, job, client_timeout, collected)
    ok = [(c, collected.metrics[c]) for c in cids if c in collected.metrics]
    bad = [(c, collected.failures[c]) for c in cids if c in collected.failures]
    return ok, bad


async def _one(
    session: RoundSession,
    admit: anyio.Semaphore,
    job: ClientJob,
    client_timeout: float | None,
    collected: _Collected,
) -> None:
    async with admit:
        start = time.perf_counter()
        outcome: JobOutcome | None = None
        with anyio.move_on_after(client_timeout or math.inf) as scope:
            try:
                outcome = await session.run(job)
            except Exception as exc:  # the executor failed for this client
                collected.failures[job.cid] = error_info(exc)
                return
    if scope.cancelled_caught or outcome is None:
        collected.failures[job.cid] = recorded(
            ClientTimeoutError,
            f"the evaluation of client {job.cid} ran past its {client_timeout}s "
            f"timeout and was stopped (after {time.perf_counter() - start:.1f}s)",
        )
        return
    if outcome.logs:
        replay(outcome.logs)
    if outcome.error is not None:
        collected.failures[job.cid] = outcome.error
        return
    try:
        collected.metrics[job.cid] = _checked(job.cid, outcome.result)
    except TypeError as exc:
        collected.failures[job.cid] = error_info(exc)


def evaluation_of(adapter: Any, executor: Executor) -> Callable[..., Any] | str:
    """The work's ``evaluate_client``, or why evaluation cannot run here."""
    from blazefl.sim._adapters import NativeWork

    if executor.kind == "cohort":
        return (
            "evaluate_clients() runs one client per job, which CohortExecutor "
            "does not: use InlineExecutor, ThreadExecutor, ProcessExecutor or "
            "RayExecutor"
        )
    work = adapter.work.work if isinstance(adapter.work, NativeWork) else None
    evaluate = getattr(work, "evaluate_client", None)
    if not callable(evaluate):
        return (
            f"{adapter.client} has no evaluate_client(ctx, payload), which "
            "evaluate_clients() runs for each client (blazefl.algorithms."
            "FederatedClient has it)"
        )
    return evaluate  # type: ignore[no-any-return]


def check_chunk_size(chunk_size: object, workers: int) -> int:
    """``chunk_size`` or the default (`CHUNK_PER_WORKER` per worker)."""
    if chunk_size is None:
        return CHUNK_PER_WORKER * workers
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise ConfigurationError(
            f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}"
        )
    if chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size
