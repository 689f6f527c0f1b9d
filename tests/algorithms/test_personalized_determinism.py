"""Every personalized algorithm is bitwise equal across executors and worker
counts: the global model and every client's kept state (vᵢ, αᵢ, heads,
BatchNorm)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from personal_fakes import PERSONALIZED, outcome, simulation

from blazefl.algorithms import Algorithm
from blazefl.sim import InlineExecutor, ProcessExecutor, ThreadExecutor


def _same_states(a: dict[int, Any], b: dict[int, Any]) -> None:
    assert a.keys() == b.keys()
    for cid in a:
        assert a[cid].keys() == b[cid].keys(), cid
        for key in a[cid]:
            assert torch.equal(a[cid][key], b[cid][key]), (cid, key)


@pytest.mark.parametrize("algorithm", PERSONALIZED.values(), ids=list(PERSONALIZED))
def test_bitwise_equal_across_executors(algorithm: Algorithm) -> None:
    """Inline, 1 and 2 threads, 2 processes: same model, same client states."""
    executors = [
        InlineExecutor(),
        ThreadExecutor(1),
        ThreadExecutor(2),
        ProcessExecutor(2),
    ]
    results = []
    for executor in executors:
        sim = simulation(algorithm, executor, rounds=3)
        sim.run_sync()
        results.append(outcome(sim))
    (params, states), *others = results
    assert states, "no client kept a state"
    for other_params, other_states in others:
        assert torch.equal(other_params, params)
        _same_states(other_states, states)
