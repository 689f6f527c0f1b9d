"""Whole-batch tensor views and the loader built over them.

A client's partition is a `TensorView`: the data set's one big data tensor,
its one target tensor and the client's index tensor. Nothing is copied per
client or per round. `make_loader` builds a real `DataLoader` that asks the
view for a whole batch at a time (one gather per batch) instead of collating
`batch_size` single samples, which dominates the cost of small models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

from blazefl._exceptions import ConfigurationError

__all__ = ["TensorView", "make_loader"]

Index = int | Sequence[int] | torch.Tensor


class TensorView(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The rows `indices` of `(data, targets)`, indexable by one int or a batch.

    `view[i]` is one sample; `view[[i, j, ...]]` (or an index tensor) is the
    stacked batch `(data[rows], targets[rows])`. `indices=None` views all rows.
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor | None = None,
    ) -> None:
        if data.shape[0] != targets.shape[0]:
            raise ConfigurationError(
                f"data and targets differ in length: {data.shape[0]} rows of "
                f"data, {targets.shape[0]} targets"
            )
        if indices is None:
            indices = torch.arange(data.shape[0])
        indices = indices.to(torch.int64)
        if indices.ndim != 1:
            raise ConfigurationError(
                f"indices must be one-dimensional, got shape {tuple(indices.shape)}"
            )
        self.data = data
        self.targets = targets
        self.indices = indices

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(index, int):
            rows: int | torch.Tensor = int(self.indices[index])
        else:
            rows = self.indices[torch.as_tensor(index, dtype=torch.int64)]
        return self.data[rows], self.targets[rows]

    def subset(self, positions: torch.Tensor) -> TensorView:
        """The view of this view's `positions`, still over the same tensors."""
        return TensorView(self.data, self.targets, self.indices[positions])


def _keep_batch(batch: Any) -> Any:
    # The default converter would turn the `(x, y)` tuple into a list.
    return batch


def make_loader(
    dataset: Dataset[Any],
    batch_size: int | None,
    generator: torch.Generator | None,
    shuffle: bool,
) -> DataLoader[Any]:
    """A `DataLoader` over `dataset` yielding `(x, y)` batches.

    Batches are shuffled only when `shuffle` is True and a `generator` is
    given, and then only from that generator (never the global RNG), so the
    order is a function of the generator's state. `batch_size=None` yields the
    whole data set as one batch. A `TensorView` is fetched a batch at a time;
    any other sized `Dataset` goes through the usual per-sample collation.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if batch_size is None:
        batch_size = max(n, 1)
    elif isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigurationError(
            f"batch_size must be an integer >= 1 or None, got {batch_size!r}"
        )
    sampler: RandomSampler | SequentialSampler
    if shuffle and generator is not None:
        sampler = RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
    else:
        sampler = SequentialSampler(dataset)  # type: ignore[arg-type]
        # Never read, but without a generator of its own every `iter(loader)`
        # draws a worker seed from the global torch RNG, a hidden side effect
        # that shifts whatever else the caller seeded.
        generator = torch.Generator()
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    # Handing the DataLoader the sampler's generator too makes the order the
    # same as `DataLoader(dataset, batch_size, shuffle=True, generator=...)`.
    if isinstance(dataset, TensorView):
        # batch_size=None turns off automatic batching: each list of indices
        # from `batches` goes to `dataset[list]` in one call.
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=batches,
            collate_fn=_keep_batch,
            generator=generator,
        )
    return DataLoader(dataset, batch_sampler=batches, generator=generator)
