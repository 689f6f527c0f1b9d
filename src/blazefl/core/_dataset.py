"""`FilteredDataset`: one client's share of a data set, as a torch Dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, SupportsInt, TypeAlias

import numpy as np
import torch
from torch.utils.data import Dataset

from blazefl._exceptions import ConfigurationError

__all__ = ["FilteredDataset"]

#: What can be filtered: any indexable sequence, a tensor or a numpy array.
Indexable: TypeAlias = Sequence[Any] | torch.Tensor | np.ndarray[Any, Any]


def _select(values: Indexable, indices: list[int]) -> Any:
    """Copy the selected rows, keeping tensors and arrays as one compact block."""
    if isinstance(values, torch.Tensor):
        return values[torch.tensor(indices, dtype=torch.long)]
    if isinstance(values, np.ndarray):
        return values[np.asarray(indices, dtype=np.intp)]
    return [values[i] for i in indices]


class FilteredDataset(Dataset[Any]):
    """The items of ``original_data`` (and targets) at ``indices``.

    Partitioners build one per client. The selected items are copied at
    construction (tensors and numpy arrays by fancy indexing, other sequences
    into a list), so a client's dataset does not keep the full data set alive
    and pickles only its own share when sent to a worker process.

    Items are ``(transform(x), target_transform(y))`` when targets were given,
    else ``transform(x)``; either transform may be None. Raises
    `ConfigurationError` (a ValueError) when data and targets differ in length
    or an index is out of range.
    """

    def __init__(
        self,
        indices: Iterable[SupportsInt],
        original_data: Indexable,
        original_targets: Indexable | None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        size = len(original_data)
        if original_targets is not None and len(original_targets) != size:
            raise ConfigurationError(
                f"original_data has {size} items but original_targets has "
                f"{len(original_targets)}; pass targets aligned with the data"
            )
        # int() also accepts numpy and 0-d tensor indices.
        self.indices = [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < size]
        if bad:
            raise ConfigurationError(
                f"indices {bad[:5]} are out of range for original_data of "
                f"{size} items; pass indices in [0, {size})"
            )
        self.data = _select(original_data, self.indices)
        self.targets = (
            None
            if original_targets is None
            else _select(original_targets, self.indices)
        )
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        item = self.data[index]
        if self.transform is not None:
            item = self.transform(item)
        if self.targets is None:
            return item
        target = self.targets[index]
        if self.target_transform is not None:
            target = self.target_transform(target)
        return item, target
