"""What a `FederatedServer` checks when it is built: its federation's shape.

How many clients a round samples (`clients_per_round`), whether the data set
has a partition for each of them (`check_federation_size`), whether a tensor a
client sends is shaped like the model (`check_like_model`), and which
aggregator and privacy step the server runs with (`check_aggregator`,
`private_aggregation`). Each refuses a bad value with a `ConfigurationError`
naming it, before any round runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl._validate import RATIO_WORDING, check_ratio, sampled_per_round
from blazefl.algorithms._aggregation import Aggregator, WeightedMean
from blazefl.algorithms._base import Algorithm

__all__ = [
    "check_aggregator",
    "check_federation_size",
    "check_like_model",
    "clients_per_round",
    "private_aggregation",
]


def check_aggregator(
    algorithm: Algorithm, aggregator: object, per_round: int
) -> Aggregator:
    """The server's aggregator (the weighted mean by default), refused if the
    algorithm cannot use it or ``per_round`` clients break its assumption."""
    if aggregator is None:
        return WeightedMean()
    if not isinstance(aggregator, Aggregator):
        raise ConfigurationError(
            f"aggregator must be a blazefl.algorithms.Aggregator (e.g. "
            f"blazefl.robust.Median), got {aggregator!r}"
        )
    if (
        not isinstance(aggregator, WeightedMean)
        and not type(algorithm).pluggable_aggregation
    ):
        raise ConfigurationError(
            f"{type(algorithm).__name__} computes its own aggregate, so it cannot "
            f"use the aggregator {aggregator!r}; use an algorithm whose aggregate "
            "goes through blazefl.algorithms.aggregate_model / aggregate_delta "
            "(and declares pluggable_aggregation = True)"
        )
    aggregator.check(per_round)
    return aggregator


def private_aggregation(
    privacy: Any,
    algorithm: Algorithm,
    aggregator: Aggregator,
    num_clients: int,
    per_round: int,
) -> Any:
    """The server side of a `blazefl.privacy.Privacy` (None when it is off)."""
    if privacy is None:
        return None
    from blazefl.privacy import Privacy, PrivateAggregation

    if not isinstance(privacy, Privacy):
        raise ConfigurationError(
            f"privacy must be a blazefl.privacy.Privacy, got {privacy!r}"
        )
    if not privacy.enabled:
        return None
    privacy.check_with(algorithm, getattr(aggregator, "name", "mean"))
    return PrivateAggregation(privacy, num_clients, per_round)


def clients_per_round(num_clients: int, sample_ratio: object) -> int:
    """`sampled_per_round`, refused unless it is in [1, num_clients]."""
    wording = RATIO_WORDING
    if (
        isinstance(sample_ratio, int | float)
        and not isinstance(sample_ratio, bool)
        and math.isfinite(sample_ratio)
        and sample_ratio > 1
    ):
        wording += (
            f": it would sample {int(num_clients * sample_ratio)} clients a round "
            f"but there are only num_clients={num_clients}"
        )
    ratio = check_ratio("sample_ratio", sample_ratio, wording=wording)
    per_round = sampled_per_round(num_clients, ratio)
    if per_round < 1:
        raise ConfigurationError(
            f"sample_ratio={sample_ratio} of num_clients={num_clients} samples "
            "no client per round; raise one of them"
        )
    return per_round


def check_federation_size(num_clients: int, dataset: Any) -> None:
    """Refuse a federation larger than the data set's client partitions.

    Sampling a client id the data set has no partition for would fail every
    round that client is drawn, half-way through training.
    """
    available = getattr(dataset, "num_clients", None)
    if (
        isinstance(available, int)
        and not isinstance(available, bool)
        and num_clients > available
    ):
        raise ConfigurationError(
            f"num_clients={num_clients} but the data set has only {available} "
            f"client partitions; use num_clients <= {available} or build the data "
            f"set for {num_clients} clients"
        )


def check_like_model(
    who: str, what: str, value: object, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    """``value`` must be a tensor of the global model's ``shape`` and ``dtype``.

    Metadata only: nothing of the tensor's data is read.
    """
    if not isinstance(value, torch.Tensor):
        raise ConfigurationError(
            f"{who} sent {type(value).__name__} {what}, expected a tensor of shape "
            f"{shape} and dtype {dtype}"
        )
    if tuple(value.shape) != shape or value.dtype != dtype:
        raise ConfigurationError(
            f"{who} sent {what} of shape {tuple(value.shape)} and dtype "
            f"{value.dtype}; the global model has shape {shape} and dtype {dtype}"
        )
