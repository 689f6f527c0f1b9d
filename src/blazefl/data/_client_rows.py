"""Which rows each client holds: checked, then packed into one index tensor.

A data set with a million clients keeps their row indices as one int64
tensor and an offsets tensor (`packed`), so pickling it for process workers
sends two tensors rather than a million; `as_index_tensor` checks one
client's indices on the way in, naming the client at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError

__all__ = ["ClientIndices", "as_index_tensor", "client_tests", "packed"]

#: One client's rows: a 1-D integer tensor, NumPy array or sequence of ints.
ClientIndices: TypeAlias = torch.Tensor | np.ndarray | Sequence[int]


def as_index_tensor(cid: int, indices: ClientIndices, num_rows: int) -> torch.Tensor:
    tensor = torch.as_tensor(indices)
    if tensor.ndim != 1:
        raise ConfigurationError(
            f"client {cid}'s indices must be one-dimensional, "
            f"got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    if (
        tensor.dtype.is_floating_point
        or tensor.dtype.is_complex
        or (tensor.dtype == torch.bool)
    ):
        raise ConfigurationError(
            f"client {cid}'s indices must be integers, got dtype {tensor.dtype}"
        )
    tensor = tensor.to(torch.int64)
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= num_rows:
        bad = low if low < 0 else high
        raise ConfigurationError(
            f"client {cid}'s indices must lie in range(0, {num_rows}) "
            f"(the training rows), got {bad}"
        )
    return tensor


def client_tests(
    indices: Sequence[ClientIndices] | None, num_clients: int, num_rows: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each client's test rows as one index tensor and its offsets, or None."""
    if indices is None:
        return None
    if len(indices) != num_clients:
        raise ConfigurationError(
            f"client_test_indices lists {len(indices)} clients but there are "
            f"{num_clients} training partitions; pass one index array per client"
        )
    return packed([as_index_tensor(c, r, num_rows) for c, r in enumerate(indices)])


def packed(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors as one tensor and the offsets where each one starts."""
    sizes = torch.tensor([0] + [int(p.shape[0]) for p in parts])
    return torch.cat(parts), torch.cumsum(sizes, 0)
