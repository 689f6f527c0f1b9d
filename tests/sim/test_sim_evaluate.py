"""evaluate_every: evaluation follows the user's schedule, never an implicit cost."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.sim import InlineExecutor, Simulation, ThreadExecutor
from fakes import FedAvgHandler, ScriptedWork


class CountingHandler(FedAvgHandler):
    """Counts get_summary calls (the evaluation)."""

    def __init__(self, rounds: int = 5) -> None:
        super().__init__(num_clients=6, per_round=3, rounds=rounds)
        self.evaluations: list[int] = []

    def get_summary(self) -> dict[str, Any]:
        self.evaluations.append(self.round)
        return super().get_summary()


class NoTestSplitHandler(FedAvgHandler):
    """A handler whose evaluation cannot run (no test split)."""

    def get_summary(self) -> dict[str, Any]:
        raise KeyError("this data set has no 'test' partition")


def _run(handler: FedAvgHandler, every: int, executor: Any = None) -> list[Any]:
    sim = Simulation(
        handler,
        ScriptedWork(),
        executor=executor or InlineExecutor(),
        seed=3,
        evaluate_every=every,
    )
    return sim.run_sync()


def test_every_k_rounds_and_after_the_last() -> None:
    """With evaluate_every=2 over 5 rounds, rounds 2, 4 and 5 are evaluated."""
    handler = CountingHandler(rounds=5)
    results = _run(handler, 2)
    assert handler.evaluations == [2, 4, 5]
    assert [bool(r.summary) for r in results] == [False, True, False, True, True]


def test_zero_never_evaluates_and_needs_no_test_split() -> None:
    """evaluate_every=0 never calls get_summary: a handler that cannot evaluate runs."""
    handler = NoTestSplitHandler(num_clients=6, per_round=3, rounds=2)
    results = _run(handler, 0)
    assert [r.summary for r in results] == [{}, {}]
    assert handler.round == 2


def test_the_schedule_never_changes_training() -> None:
    """The global model is bitwise the same whatever the evaluation schedule."""
    models = []
    for every, executor in ((1, None), (0, ThreadExecutor(2)), (3, None)):
        handler = CountingHandler(rounds=4)
        _run(handler, every, executor)
        models.append(handler.params)
    assert all(torch.equal(models[0], m) for m in models[1:])


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_a_bad_schedule_is_refused(value: Any) -> None:
    """evaluate_every must be an integer >= 0."""
    with pytest.raises(ConfigurationError, match=r"evaluate_every must be an integer"):
        Simulation(FedAvgHandler(), ScriptedWork(), evaluate_every=value)
