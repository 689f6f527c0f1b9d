"""Recorded failures keep their exception type: catchable and matchable."""

from __future__ import annotations

from pathlib import Path

import pytest

from blazefl import (
    ClientError,
    ClientTimeoutError,
    NonFiniteUpdateError,
    RoundFailedError,
    UpdateRejectedError,
    WorkerDiedError,
)
from blazefl.sim import ClientFailure, ProcessExecutor, Simulation, ThreadExecutor
from blazefl.sim.abc import error_info, recorded
from fakes import FedAvgHandler, Misbehave, ScriptedWork

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("cls", "kind"),
    [
        (ClientTimeoutError, "timeout"),
        (WorkerDiedError, "worker_died"),
        (UpdateRejectedError, "rejected"),
        (NonFiniteUpdateError, "rejected"),
    ],
)
def test_recorded_failures_rebuild_their_own_class(
    cls: type[ClientError], kind: str
) -> None:
    """A framework failure's kind follows its class, and exception() returns it."""
    failure = recorded(cls, "what happened")
    assert (failure.kind, failure.type) == (kind, cls.__name__)
    rebuilt = failure.exception()
    assert type(rebuilt) is cls
    assert str(rebuilt) == "what happened"


def test_a_client_s_own_error_comes_back_as_a_client_error() -> None:
    """An exception the work raised is a ClientError naming the original type."""
    try:
        raise KeyError("missing")
    except KeyError as exc:
        failure = error_info(exc)
    assert failure.kind == "error"
    rebuilt = failure.exception()
    assert type(rebuilt) is ClientError
    assert rebuilt.type_name == "KeyError"
    match rebuilt:
        case ClientTimeoutError() | WorkerDiedError():
            pytest.fail("a client's own error is not a framework failure")
        case ClientError(type_name="KeyError"):
            pass


def test_a_framework_error_raised_by_work_keeps_its_kind() -> None:
    """error_info of a ClientTimeoutError instance records kind "timeout"."""
    failure = error_info(ClientTimeoutError("late"))
    assert failure.kind == "timeout"
    assert isinstance(failure.exception(), ClientTimeoutError)


@pytest.mark.parametrize("executor", ["threads", "processes"])
async def test_a_timed_out_client_is_a_catchable_client_timeout_error(
    executor: str, tmp_path: Path
) -> None:
    """The failures RoundFailedError carries rebuild as ClientTimeoutError."""
    work = Misbehave(ScriptedWork(), str(tmp_path))
    work.arm("hang", cid=1)
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    sim = Simulation(
        handler,
        work,
        executor=ThreadExecutor(2) if executor == "threads" else ProcessExecutor(2),
        client_timeout=0.5,
    )
    async with sim:
        with pytest.raises(RoundFailedError) as info:
            await sim.run_round()
    (failure,) = info.value.failures
    assert isinstance(failure, ClientFailure)
    assert isinstance(failure.exception(), ClientTimeoutError)


def test_a_refusal_by_check_uplink_is_an_update_rejected_error() -> None:
    """A check_uplink refusal keeps the handler's exception name in type_name."""
    failure = ClientFailure("rejected", "ConfigurationError", "bad shape")
    rebuilt = failure.exception()
    assert type(rebuilt) is UpdateRejectedError
    assert rebuilt.type_name == "ConfigurationError"
    assert str(rebuilt) == "ConfigurationError: bad shape"
