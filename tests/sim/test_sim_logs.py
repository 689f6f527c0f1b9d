"""Structured logs: one entry per client, one per round, and the work's own lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from sim_fakes import EXECUTORS, OFF_LOOP

from blazefl.sim import Simulation, gil_enabled
from fakes import FedAvgHandler, Misbehave, ScriptedWork

pytestmark = pytest.mark.anyio

WORKER_PREFIX = {"threads": "thread-", "processes": "process-"}


async def _logged_round(
    kind: str, work: Any, **kwargs: Any
) -> tuple[Any, list[dict[str, Any]]]:
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    sim = Simulation(handler, work, executor=EXECUTORS[kind](), **kwargs)
    with structlog.testing.capture_logs() as logs:
        async with sim:
            result = await sim.run_round()
    return result, logs


def _named(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_each_client_gets_a_client_finished_entry(kind: str) -> None:
    """client_finished carries round, cid, slot, worker, seconds and metrics."""
    result, logs = await _logged_round(kind, ScriptedWork())
    entries = _named(logs, "client_finished")
    assert sorted((e["slot"], e["cid"]) for e in entries) == list(
        enumerate(result.cids)
    )
    for entry in entries:
        report = result.clients[entry["slot"]]
        assert entry["log_level"] == "info"
        assert entry["round"] == 0
        assert entry["worker"] == report.worker
        assert entry["worker"].startswith(WORKER_PREFIX[kind])
        assert entry["seconds"] == report.seconds > 0
        assert entry["metrics"] == report.metrics
        assert set(entry["metrics"]) == {"loss", "num_samples"}


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_each_round_gets_a_round_finished_entry(kind: str) -> None:
    """round_finished: round, clients, seconds, metrics, executor, workers, GIL."""
    result, logs = await _logged_round(kind, ScriptedWork())
    (entry,) = _named(logs, "round_finished")
    assert entry["log_level"] == "info"
    assert entry["round"] == 0
    assert (entry["clients"], entry["failed"]) == (3, 0)
    assert entry["seconds"] == result.seconds > 0
    assert entry["metrics"] == result.metrics
    assert entry["summary"] == result.summary
    assert (entry["executor"], entry["workers"]) == (kind, 2)
    assert entry["gil_enabled"] is gil_enabled()
    names = [e["event"] for e in logs]
    assert names[0] == "simulation_started"
    assert names.index("round_started") < names.index("round_finished")
    assert names[-1] == "round_finished"


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_work_log_lines_carry_round_and_cid(kind: str) -> None:
    """ctx.log lines (replayed from process workers) are bound to round and cid."""
    result, logs = await _logged_round(kind, ScriptedWork(log=True))
    lines = _named(logs, "client_step")
    assert sorted(e["cid"] for e in lines) == sorted(result.cids)
    for line in lines:
        assert line["round"] == 0
        assert line["step"] == 1
        assert line["log_level"] == "info"
        assert (
            line["worker_label"]
            == result.clients[result.cids.index(line["cid"])].worker
        )
    # Each client's own line comes out before the coordinator's entry about it.
    names = [(e["event"], e.get("cid")) for e in logs]
    for cid in result.cids:
        assert names.index(("client_step", cid)) < names.index(("client_finished", cid))


async def test_failed_client_is_logged_as_a_warning(tmp_path: Path) -> None:
    """client_failed is a warning with kind and error, its traceback left out."""
    work = Misbehave(ScriptedWork(), str(tmp_path))
    work.arm("raise", cid=1)
    result, logs = await _logged_round("threads", work, on_client_failure="drop")
    (entry,) = _named(logs, "client_failed")
    assert entry["log_level"] == "warning"
    assert (entry["round"], entry["cid"], entry["kind"]) == (0, 1, "error")
    assert entry["slot"] == result.cids.index(1)
    assert entry["error"] == "ScriptedError: scripted failure of client 1"
    assert "traceback" not in entry
    (finished,) = _named(logs, "round_finished")
    assert finished["failed"] == 1


def _leveled_lines(ctx: Any, payload: Any) -> Any:
    ctx.log.debug("client_debug", n=1)
    ctx.log.warning("client_warning", items=[1, 2])
    ctx.log.error("client_error", reason="scripted")
    return payload, 1


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
async def test_work_log_levels_and_fields_survive_every_executor(kind: str) -> None:
    """Each ctx.log line comes out at its own level with its own fields, whether
    logged on a thread or replayed from a process worker."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    sim = Simulation(handler, _leveled_lines, executor=EXECUTORS[kind]())
    with structlog.testing.capture_logs() as logs:
        async with sim:
            result = await sim.run_round()
    events = ("client_debug", "client_warning", "client_error")
    for cid in result.cids:
        lines = [e for e in logs if e["event"] in events and e["cid"] == cid]
        base = {"round": 0, "cid": cid}
        assert lines == [
            {**base, "event": "client_debug", "log_level": "debug", "n": 1},
            {
                **base,
                "event": "client_warning",
                "log_level": "warning",
                "items": [1, 2],
            },
            {
                **base,
                "event": "client_error",
                "log_level": "error",
                "reason": "scripted",
            },
        ]


def test_round_and_cid_context_variables_exist_before_any_worker_binds() -> None:
    """Importing the job runner creates structlog's ``round``/``cid`` variables.

    structlog creates a key's ContextVar on first bind without a lock; two
    free-threaded workers binding ``cid`` at once each made one, and one
    client failed ("Token ... was created by a different ContextVar"). A
    fresh interpreter shows the variables exist once the module is imported.
    """
    code = (
        "import structlog.contextvars as c\n"
        "before = set(c._CONTEXT_VARS)\n"
        "import blazefl.sim._jobs\n"
        "print(sorted(set(c._CONTEXT_VARS) - before))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert ast.literal_eval(out.stdout) == ["structlog_cid", "structlog_round"]
