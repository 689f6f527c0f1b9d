"""Feature shift: each client sees its inputs through its own transformation.

Label skew (``shards``, ``label-skew``) changes which classes a client holds;
feature shift changes how its samples look (other scanners, other cameras,
other lighting), the setting FedBN (local BatchNorm) is made for. `feature_shift`
turns any in-memory data set into one where every client's training rows and
its own test rows pass through a per-client transformation drawn from the
seed:

- ``"rotation"``: a quarter-turn rotation, 0, 90, 180 or 270 degrees (exact,
  so square images only);
- ``"contrast"``: x ↦ a·x + b with a contrast a log-uniform in [1/4, 4] and a
  brightness b uniform in [-4, 4] (the built-in synthetic images have a pixel
  standard deviation of about 3).

Each client gets its own test partition: an equal share of the test set
(dealt by the seed), shifted like its training data; the server-side test
set is the union of those shares. `client_shifts` lists the draws, and
``partition_report(..., shifts=...)`` prints them beside each client's labels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data._partitioned import TensorPartitionedDataset, check_seed, iid_split

__all__ = ["FEATURE_SHIFTS", "ClientShift", "client_shifts", "feature_shift"]

#: The transformations `feature_shift` knows.
FEATURE_SHIFTS: Final = ("rotation", "contrast")
Pair: TypeAlias = tuple[torch.Tensor, torch.Tensor]
# A stream of its own, so drawing shifts leaves every other draw unchanged.
_STREAM = 0xFEA7


@dataclass(frozen=True, slots=True)
class ClientShift:
    """One client's transformation: ``quarter_turns`` rotations, then
    x ↦ ``contrast``·x + ``brightness``."""

    quarter_turns: int = 0
    contrast: float = 1.0
    brightness: float = 0.0

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """The shifted copy of a ``(n, channels, height, width)`` batch."""
        out = images
        if self.quarter_turns:
            out = torch.rot90(out, self.quarter_turns, dims=(-2, -1))
        if self.contrast != 1.0 or self.brightness != 0.0:
            out = out * self.contrast + self.brightness
        return out.contiguous() if out is not images else out.clone()

    def __str__(self) -> str:
        if self.quarter_turns:
            return f"rot{90 * self.quarter_turns}"
        return f"x*{self.contrast:.2f}{self.brightness:+.2f}"


def client_shifts(kind: str, num_clients: int, seed: int) -> list[ClientShift]:
    """Each client's transformation of kind ``kind``, drawn from ``seed``."""
    if kind not in FEATURE_SHIFTS:
        raise ConfigurationError(
            f"unknown feature shift {kind!r}; expected one of {FEATURE_SHIFTS}"
        )
    rng = np.random.default_rng([check_seed(seed), _STREAM])
    if kind == "rotation":
        turns = rng.integers(0, 4, size=num_clients)
        return [ClientShift(quarter_turns=int(t)) for t in turns]
    contrast = np.exp(rng.uniform(-np.log(4), np.log(4), size=num_clients))
    brightness = rng.uniform(-4.0, 4.0, size=num_clients)
    return [
        ClientShift(contrast=float(a), brightness=float(b))
        for a, b in zip(contrast, brightness, strict=True)
    ]


def _rows(dataset: TensorPartitionedDataset, kind: str, cid: int | None) -> Pair:
    view = dataset.get_dataset(kind, cid)
    data, targets, indices = view.data, view.targets, view.indices  # type: ignore[attr-defined]
    if indices is None:
        return data, targets
    return data[indices], targets[indices]


def feature_shift(
    dataset: TensorPartitionedDataset, kind: str, *, seed: int
) -> TensorPartitionedDataset:
    """``dataset`` with each client's inputs shifted (see the module docstring).

    Clients keep their training rows (their labels, their sizes); their test
    rows are their own share of the test set, shifted alike.
    """
    if not isinstance(dataset, TensorPartitionedDataset):
        raise ConfigurationError(
            "feature_shift needs a blazefl.data.TensorPartitionedDataset, got "
            f"{type(dataset).__name__}"
        )
    shape = dataset.input_shape
    if len(shape) != 3:
        raise ConfigurationError(
            f"feature shift transforms images (channels, height, width); the "
            f"data set's samples have shape {shape}"
        )
    if kind == "rotation" and shape[1] != shape[2]:
        raise ConfigurationError(
            f"a rotation feature shift needs square images, got {shape[1]}x{shape[2]}"
        )
    k = dataset.num_clients
    shifts = client_shifts(kind, k, seed)
    test_x, test_y = _rows(dataset, "test", None)
    if test_y.shape[0] < k:
        raise ConfigurationError(
            f"the test set has {test_y.shape[0]} samples, fewer than the {k} "
            "clients that each need a share of it"
        )
    shares = iid_split(int(test_y.shape[0]), k, seed)
    train_parts, test_parts = [], []
    for cid, shift in enumerate(shifts):
        x, y = _rows(dataset, "train", cid)
        train_parts.append((shift.apply(x), y))
        rows = shares[cid]
        test_parts.append((shift.apply(test_x[rows]), test_y[rows]))

    def stacked(parts: list[Pair]) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
        ends = np.cumsum([0, *(int(y.shape[0]) for _, y in parts)])
        indices = [torch.arange(int(a), int(b)) for a, b in itertools.pairwise(ends)]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        return x, y, indices

    train_x, train_y, train_indices = stacked(train_parts)
    shifted_x, shifted_y, test_indices = stacked(test_parts)
    return TensorPartitionedDataset(
        train_x,
        train_y,
        train_indices,
        shifted_x,
        shifted_y,
        num_classes=dataset.num_classes,
        client_test_indices=test_indices,
    )
