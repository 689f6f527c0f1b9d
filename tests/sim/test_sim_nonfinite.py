"""The NaN/inf check sees every tensor the walker sees, on every executor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from nonfinite_fakes import (
    BAD,
    MeanHandler,
    SpoilingWork,
    StrictMeanHandler,
    nested,
)
from sim_fakes import quick_processes

from blazefl import NonFiniteUpdateError, UpdateRejectedError
from blazefl._tree import MAX_DEPTH
from blazefl.sim import (
    ClientContext,
    Executor,
    InlineExecutor,
    Simulation,
    ThreadExecutor,
    _jobs,
)
from blazefl.sim._adapters import NATIVE, Adapter
from blazefl.sim._engine import RoundRunner
from blazefl.sim._finite import nonfinite as _nonfinite
from blazefl.sim._jobs import refusal as _refusal
from blazefl.sim._states import MemoryStateStore

pytestmark = pytest.mark.anyio

EXECUTORS: dict[str, Callable[[], Executor]] = {
    "inline": InlineExecutor,
    "threads": lambda: ThreadExecutor(2),
    "processes": lambda: quick_processes(2),
}

# What the two good clients (0 and 2) send: payload (zeros) + cid.
GOOD_MEAN = [1.0, 1.0, 1.0]


async def _failed_slot(
    kind: str, executor: str, handler: MeanHandler | None = None
) -> tuple[MeanHandler, str, str]:
    """Run one round with client BAD spoiled as ``kind``; return the handler
    and the failed slot's (type, message)."""
    handler = MeanHandler() if handler is None else handler
    sim = Simulation(
        handler,
        SpoilingWork(kind),
        executor=EXECUTORS[executor](),
        on_client_failure="drop",
        min_clients=2,
    )
    async with sim:
        result = await sim.run_round()
    (failed,) = result.failures
    assert failed.cid == BAD
    assert failed.failure is not None
    return handler, failed.failure.type, failed.failure.message


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
@pytest.mark.parametrize("kind", ["deep", "slots"])
async def test_hidden_nan_is_rejected_on_every_executor(
    kind: str, executor: str
) -> None:
    """A NaN 12 containers deep or in a __slots__ object fails its slot; the
    others aggregate and the global model stays finite."""
    handler, type_name, message = await _failed_slot(kind, executor)
    assert type_name == "NonFiniteUpdateError"
    assert f"client {BAD} sent an update with NaN or infinite values" in message
    assert handler.params.tolist() == GOOD_MEAN


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
@pytest.mark.parametrize("kind", ["set", "module", "complex"])
async def test_nan_in_sets_modules_and_complex_is_rejected(
    kind: str, executor: str
) -> None:
    """A NaN in a set, a module's buffer or a complex tensor fails its slot."""
    handler, type_name, _ = await _failed_slot(kind, executor)
    assert type_name == "NonFiniteUpdateError"
    assert handler.params.tolist() == GOOD_MEAN


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
async def test_meta_tensor_is_refused_as_uncheckable(executor: str) -> None:
    """A meta tensor holds no values: the update is refused, saying why."""
    handler, type_name, message = await _failed_slot("meta", executor)
    assert type_name == "UpdateRejectedError"
    assert "is on the meta device and holds no values" in message
    assert handler.params.tolist() == GOOD_MEAN


def test_update_past_the_walker_limit_is_refused() -> None:
    """Nesting past the walker's limit refuses the update as malformed,
    naming the place and the limit."""
    failure = _refusal(BAD, nested(torch.zeros(1), MAX_DEPTH + 1))
    assert failure is not None
    assert failure.exception().__class__ is UpdateRejectedError
    assert "cannot be checked for NaN or infinite values" in failure.message
    assert f"past the limit of {MAX_DEPTH}" in failure.message


class _Unsummable(torch.Tensor):
    """A tensor subclass whose sum fails, as a broken user type might."""

    def sum(self, *args: object, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
        raise RuntimeError("no sum for you")


def test_any_error_in_the_check_fails_only_the_slot() -> None:
    """An exception inside the check becomes a refused update, not a crash."""
    broken = torch.zeros(2).as_subclass(_Unsummable)
    failure = _refusal(BAD, {"w": broken})
    assert failure is not None
    assert isinstance(failure.exception(), UpdateRejectedError)
    assert "RuntimeError: no sum for you" in failure.traceback
    assert "no sum for you" in failure.message


def test_nonfinite_failure_rebuilds_its_type() -> None:
    """A NaN update is recorded as NonFiniteUpdateError, kind rejected."""
    failure = _refusal(BAD, [torch.tensor([float("nan")])])
    assert failure is not None
    assert failure.kind == "rejected"
    assert isinstance(failure.exception(), NonFiniteUpdateError)


def test_fast_path_still_finds_inf_in_complex() -> None:
    """A complex tensor whose sum is not finite gets the exact check."""
    inf = torch.tensor([complex(float("inf"), 0.0), 1j])
    assert _nonfinite({"z": inf}) == "tensor #0 (shape (2,))"
    assert _nonfinite({"z": torch.tensor([1j, 2 + 0j])}) is None


class _Scans:
    """Records the thread of every NaN/inf scan in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[threading.Thread] = []
        scan = _jobs.nonfinite

        def counted(result: Any) -> str | None:
            self.threads.append(threading.current_thread())
            return scan(result)

        monkeypatch.setattr(_jobs, "nonfinite", counted)


@pytest.mark.parametrize("executor", ["inline", "threads"])
async def test_each_update_is_scanned_once_by_its_worker(
    executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process workers scan each update once, the coordinator never again;
    on threads off the event loop's thread; the NaN one still fails its slot."""
    scans = _Scans(monkeypatch)
    handler, type_name, _ = await _failed_slot("deep", executor)
    assert type_name == "NonFiniteUpdateError"
    assert handler.params.tolist() == GOOD_MEAN
    assert len(scans.threads) == 3
    if executor == "threads":
        assert threading.current_thread() not in scans.threads


async def test_process_workers_send_their_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Process workers scan the updates: the parent scans none and still fails
    the NaN slot with NonFiniteUpdateError."""
    scans = _Scans(monkeypatch)
    handler, type_name, message = await _failed_slot("slots", "processes")
    assert type_name == "NonFiniteUpdateError"
    assert f"client {BAD} sent an update with NaN or infinite values" in message
    assert handler.params.tolist() == GOOD_MEAN
    assert scans.threads == []


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
async def test_check_uplink_still_speaks_before_the_nan_check(executor: str) -> None:
    """An update both malformed and NaN fails with the handler's error, as when
    the coordinator scanned it itself."""
    _, type_name, message = await _failed_slot("deep", executor, StrictMeanHandler())
    assert type_name == "ValueError"
    assert f"update of client {BAD} is malformed" in message


def _plus_cid(ctx: ClientContext, payload: torch.Tensor, arg: Any) -> torch.Tensor:
    return payload + ctx.cid


def _spoil_slot_one(slot: int, result: torch.Tensor) -> torch.Tensor:
    return result * float("nan") if slot == 1 else result


async def test_an_update_the_adapter_rebuilds_is_scanned_after_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the adapter's finish rebuilds updates, workers do not pre-check:
    the engine scans what finish returned, and a NaN it made fails its slot."""
    scans = _Scans(monkeypatch)
    adapter = Adapter(
        _plus_cid, lambda cid: "cpu", NATIVE, "plus_cid", finish=_spoil_slot_one
    )
    executor = ThreadExecutor(2)
    runner = RoundRunner(adapter, executor, MemoryStateStore(0))
    assert not runner.check_on_workers
    await executor.start(adapter.work)
    try:
        outcomes = await runner.run(0, torch.zeros(2), [0, 1, 2])
    finally:
        await executor.aclose()
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error is not None
    assert outcomes[1].error.type == "NonFiniteUpdateError"
    assert len(scans.threads) == 3
    assert set(scans.threads) == {threading.current_thread()}
