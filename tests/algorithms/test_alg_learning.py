"""Every built-in algorithm learns the built-in data, and SCAFFOLD (stateful
clients) is bitwise reproducible across executors."""

from __future__ import annotations

import pytest
import torch
from alg_fakes import NUM_CLIENTS, dataset, run

from blazefl.algorithms import (
    Algorithm,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    Scaffold,
)
from blazefl.data import SyntheticPartitionedDataset
from blazefl.sim import InlineExecutor, ProcessExecutor, ThreadExecutor

CHANCE = 0.1  # ten balanced classes

# 10 clients x 64 samples, half of them a round, 5 rounds, MLP, 2 epochs at
# lr 0.1 (batch 16). Observed final accuracies over seeds 0-2: 0.64-0.87.
LEARNERS: list[Algorithm] = [
    FedAvg(),
    FedAvgM(server_lr=1.0, momentum=0.5),
    FedProx(mu=0.01),
    Scaffold(num_clients=NUM_CLIENTS),
    FedAdam(server_lr=0.05),
    FedYogi(server_lr=0.05),
    FedAdagrad(server_lr=0.05),
]


@pytest.fixture(scope="module")
def data() -> SyntheticPartitionedDataset:
    return dataset()


@pytest.mark.parametrize("algorithm", LEARNERS, ids=lambda a: a.name)
def test_algorithm_learns_synthetic_data(
    algorithm: Algorithm, data: SyntheticPartitionedDataset
) -> None:
    """Five rounds end well above chance and above the first round's accuracy."""
    server, results = run(algorithm, data, rounds=5, seed=1)
    accuracies = [r.summary["server_acc"] for r in results]
    assert len(accuracies) == 5
    assert accuracies[-1] > 0.5 > 4 * CHANCE
    assert accuracies[-1] > accuracies[0] + 0.15
    assert server.get_summary()["server_acc"] == accuracies[-1]


def test_scaffold_bitwise_equal_across_executors(
    data: SyntheticPartitionedDataset,
) -> None:
    """SCAFFOLD is bitwise equal inline, in threads and in processes."""
    outcomes = []
    for executor in (InlineExecutor(), ThreadExecutor(2), ProcessExecutor(2)):
        server, results = run(
            Scaffold(num_clients=NUM_CLIENTS), data, executor=executor, rounds=3
        )
        cids = [r.cids for r in results]
        outcomes.append((server.params, server.state["c"], cids))
    (params, c, cids), *others = outcomes
    # Some client is sampled twice, so its stored cᵢ is read back.
    sampled = [cid for round_cids in cids for cid in round_cids]
    assert len(set(sampled)) < len(sampled)
    assert torch.count_nonzero(c) > 0
    for other_params, other_c, other_cids in others:
        assert other_cids == cids
        assert torch.equal(other_params, params)
        assert torch.equal(other_c, c)
