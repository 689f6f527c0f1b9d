"""`Simulation.evaluate_clients`: per-client evaluation between rounds.

The simulation's side of it: check that it can run now (started, a
synchronous run, work with ``evaluate_client``), take the handler's current
payload under the round lock, run the clients' evaluation jobs on the run's
executor (`blazefl.sim._evaluation.run_evaluation`) and publish a
`ClientsEvaluated` event. Nothing a client computes here is committed.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog.contextvars

from blazefl._exceptions import ConfigurationError, EvaluationFailedError
from blazefl.sim._engine import CID_BOUND
from blazefl.sim._evaluation import (
    ClientEvaluation,
    check_chunk_size,
    evaluation_of,
    run_evaluation,
)
from blazefl.sim._events import ClientsEvaluated

if TYPE_CHECKING:
    from blazefl.sim._simulation import Simulation

__all__ = ["evaluate_between_rounds"]


async def evaluate_between_rounds(
    sim: Simulation[Any, Any],
    cids: Any,
    *,
    chunk_size: int | None,
    threshold: float,
) -> ClientEvaluation:
    """What `Simulation.evaluate_clients` does (see its docstring)."""
    if sim._lock is None or not sim.executor.running:
        raise ConfigurationError(
            "the simulation is not started: use `async with Simulation(...) as "
            "sim:` before evaluate_clients()"
        )
    refused = evaluation_of(sim._runner.adapter, sim.executor)
    if isinstance(refused, str):
        raise ConfigurationError(refused)
    if sim._time is not None and sim._time.scheduler is not None:
        raise ConfigurationError(
            "evaluate_clients() runs between synchronous rounds; in "
            "asynchronous mode (SimTime(mode='async')) clients are always in "
            "flight: evaluate in a synchronous run"
        )
    chunk = check_chunk_size(chunk_size, sim.executor.max_workers)
    ids = _evaluation_cids(sim, cids)
    async with sim._lock:
        start = perf_counter()
        payload = await anyio.to_thread.run_sync(sim.handler.downlink_package)
        sim._evaluations += 1
        with structlog.contextvars.bound_contextvars(round=sim._round):
            ok, bad = await run_evaluation(
                sim.executor,
                sim._runner.states,
                -sim._evaluations,
                payload,
                ids,
                job_round=sim._round,
                device_of=sim._runner.adapter.device_of,
                chunk_size=chunk,
                client_timeout=sim._runner.client_timeout,
            )
        result = ClientEvaluation(
            round=sim._round,
            cids=tuple(c for c, _ in ok),
            metrics=tuple(m for _, m in ok),
            failures=tuple(bad),
            seconds=perf_counter() - start,
        )
        if not ok and bad:
            raise EvaluationFailedError(
                f"the evaluation of all {len(bad)} clients failed; the first: "
                f"client {bad[0][0]}: {bad[0][1]}",
                tuple(f for _, f in bad),
            )
        sim._emit(
            ClientsEvaluated(
                sim._round - 1,
                len(ok),
                len(bad),
                result.seconds,
                result.stats(threshold),
            )
        )
        return result


def _evaluation_cids(sim: Simulation[Any, Any], cids: Any) -> list[int]:
    if cids is None:
        total = getattr(sim.handler, "num_clients", None)
        if isinstance(total, bool) or not isinstance(total, int):
            raise ConfigurationError(
                f"{sim._handler.name} has no num_clients; pass the clients "
                "to evaluate: evaluate_clients(cids=[...])"
            )
        return list(range(total))
    try:
        ids = list(cids)
    except TypeError:
        raise ConfigurationError(
            f"cids must be a list of client ids, got {cids!r}"
        ) from None
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise ConfigurationError(f"cids holds {cid!r}; client ids are ints")
        if not 0 <= cid < CID_BOUND:
            raise ConfigurationError(f"cids holds {cid}; ids lie in [0, 2**32)")
    if len(set(ids)) != len(ids):
        raise ConfigurationError("cids holds a client id twice")
    return ids
