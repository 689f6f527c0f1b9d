"""BlazeFL 3.0's error phrases, which its users' tests match, start our messages."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from blazefl.contrib import FedAvgBaseServerHandler
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo

CLIENTS = 10


@pytest.fixture(scope="module")
def dataset() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(num_clients=CLIENTS, seed=0)


def _handler(dataset: SyntheticPartitionedDataset, **kwargs: Any) -> None:
    args: dict[str, Any] = {
        "model_selector": ModelZoo(),
        "model_name": "mlp",
        "dataset": dataset,
        "global_round": 2,
        "num_clients": CLIENTS,
        "sample_ratio": 0.5,
        "device": "cpu",
        "batch_size": 32,
        "seed": 0,
        **kwargs,
    }
    FedAvgBaseServerHandler(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"global_round": 0}, r"^global_round must be positive, got 0"),
        ({"num_clients": 0}, r"^num_clients must be positive, got 0"),
        (
            {"sample_ratio": 0.0},
            r"^sample_ratio must be in the interval \(0, 1\], got 0\.0",
        ),
        (
            {"sample_ratio": 0.05},
            r"^sample_ratio selects zero clients per round; increase "
            r"sample_ratio or num_clients \(",
        ),
    ],
)
def test_handler_phrase(
    dataset: SyntheticPartitionedDataset, kwargs: dict[str, Any], match: str
) -> None:
    """Each bad handler argument is refused in BlazeFL's phrase, as a ValueError."""
    with pytest.raises(ValueError, match=match):
        _handler(dataset, **kwargs)


def test_evaluate_empty_loader_phrase() -> None:
    """The handler's evaluate refuses an empty loader in BlazeFL's phrase."""
    model = torch.nn.Linear(2, 2)
    with pytest.raises(
        ValueError, match=r"^test_loader must yield at least one sample for evaluation"
    ):
        FedAvgBaseServerHandler.evaluate(model, [], "cpu")
