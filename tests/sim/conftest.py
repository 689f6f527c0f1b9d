"""Fixtures shared by the tests/sim suite (anyio_backend: tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sim_fakes import SEED, digest

from blazefl.sim import InlineExecutor, Simulation
from fakes import FedAvgHandler, ScriptedWork


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    """The default federation run inline, in order, undisturbed: the ground truth."""
    handler = FedAvgHandler()
    sim = Simulation(handler, ScriptedWork(), executor=InlineExecutor(), seed=SEED)
    results = sim.run_sync()
    assert [r.round for r in results] == [0, 1, 2]
    return digest(handler, results)
