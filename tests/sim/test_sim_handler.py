"""The server-handler contract: required methods and capabilities checked once."""

from __future__ import annotations

from typing import Any

import pytest

from blazefl import ConfigurationError
from blazefl._prechecked import check_unless_prechecked
from blazefl.sim import InlineExecutor, ServerHandler, Simulation
from fakes import FedAvgHandler, ScriptedWork

REQUIRED = ("sample_clients", "downlink_package", "load", "is_stopped")


class _Without:
    """A FedAvgHandler with one required method hidden."""

    def __init__(self, missing: str) -> None:
        self._inner = FedAvgHandler()
        self._missing = missing

    def __getattr__(self, name: str) -> Any:
        if name == self._missing:
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_handler_missing_a_required_method_is_refused_naming_it(
    missing: str,
) -> None:
    """Construction names the one required method the handler lacks."""
    with pytest.raises(ConfigurationError, match=rf"has no {missing}\(\) method"):
        Simulation(_Without(missing), ScriptedWork())


def test_the_fake_handler_is_a_server_handler() -> None:
    """ServerHandler is a runtime-checkable protocol of the four round methods."""
    assert isinstance(FedAvgHandler(), ServerHandler)
    assert not isinstance(object(), ServerHandler)


class _CountingHandler(FedAvgHandler):
    """Checks each update in check_uplink, and again in load for direct callers."""

    def __init__(self) -> None:
        super().__init__(num_clients=4, per_round=4, rounds=2)
        self.checks = 0

    def check_uplink(self, package: Any) -> None:
        self.checks += 1

    def load(self, package: tuple[Any, int]) -> bool:
        check_unless_prechecked(self.check_uplink, package)
        return super().load(package)


@pytest.mark.anyio
async def test_check_uplink_runs_once_per_update_under_the_coordinator() -> None:
    """The engine checks each update; load, fed inside prechecked, does not again."""
    handler = _CountingHandler()
    async with Simulation(handler, ScriptedWork(), executor=InlineExecutor()) as sim:
        await sim.run()
    assert (handler.round, handler.load_calls, handler.checks) == (2, 8, 8)


def test_a_direct_load_still_checks_its_update() -> None:
    """A BlazeFL-style loop that calls load itself gets the check there."""
    handler = _CountingHandler()
    package = (handler.downlink_package(), 1)
    handler.load(package)
    assert handler.checks == 1
