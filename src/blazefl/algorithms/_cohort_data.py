"""Each cohort member's batches, in exactly the order its per-client run draws.

The per-client path (`FederatedClient`) iterates
``dataset.get_dataloader("train", cid, batch_size, ctx.rng.torch_cpu)`` once per
epoch. A cohort must see the same batches in the same order and leave the
client's generator where that loop leaves it, or the next round would differ.

For the built-in data sets (a `TensorView` behind the stock
`TensorPartitionedDataset.get_dataloader`) the draws are replayed directly on
the generator, which is ~50x cheaper than building and iterating a DataLoader:
per epoch the DataLoader's iterator draws one int64 (its worker base seed),
then the `RandomSampler` draws ``randperm(n)`` for the epoch and, when the
batch sampler exhausts it, one more ``randperm(n)`` that it slices to nothing.
`replay_matches_loader` checks that account against the installed torch once
per process; where it does not hold, or for any other data set, the real
loader is iterated (exact, only slower).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data import TensorPartitionedDataset
from blazefl.data._loader import TensorView, make_loader

__all__ = ["ClientBatches", "client_batches", "replay_matches_loader"]


@dataclass(frozen=True, slots=True)
class ClientBatches:
    """One client's local training data, cut into padded steps.

    Either ``rows`` (``(steps, batch_size)`` row numbers into ``source``, the
    data set's shared ``(data, targets)`` tensors: a chunk gathers all its
    clients' batches in one indexing) or ``x``/``y`` themselves, shaped
    ``(steps, batch_size, ...)``. ``counts[s]`` real samples in step s (the
    rest of the row is padding that the loss mask zeroes out).
    """

    counts: list[int]
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    source: tuple[torch.Tensor, torch.Tensor] | None = None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, gathered from ``source`` if needed."""
        if self.x is not None and self.y is not None:
            return self.x, self.y
        assert self.rows is not None
        assert self.source is not None
        return self.source[0][self.rows], self.source[1][self.rows]


def _replay_orders(
    generator: torch.Generator, n: int, epochs: int
) -> list[torch.Tensor]:
    orders = []
    for _ in range(epochs):
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        orders.append(torch.randperm(n, generator=generator))
        torch.randperm(n, generator=generator)
    return orders


@functools.cache
def replay_matches_loader() -> bool:
    """Whether `_replay_orders` draws what `make_loader` draws, on this torch."""
    data = torch.arange(7, dtype=torch.float32).unsqueeze(1)
    view = TensorView(data, torch.arange(7))
    loader_gen = torch.Generator().manual_seed(1234)
    loader = make_loader(view, 3, loader_gen, shuffle=True)
    seen = [torch.cat([y for _, y in loader]) for _ in range(2)]
    replay_gen = torch.Generator().manual_seed(1234)
    orders = _replay_orders(replay_gen, 7, 2)
    return all(torch.equal(a, b) for a, b in zip(seen, orders, strict=True)) and (
        torch.equal(loader_gen.get_state(), replay_gen.get_state())
    )


def _fast_view(dataset: Any, cid: int) -> TensorView | None:
    if type(dataset).get_dataloader is not TensorPartitionedDataset.get_dataloader:
        return None
    view = dataset.get_dataset("train", cid)
    if type(view) is not TensorView or not replay_matches_loader():
        return None
    return view


def _pad(t: torch.Tensor, steps: int, batch_size: int) -> torch.Tensor:
    """``t`` (n rows) as ``(steps, batch_size, ...)``, padded with copies of
    row 0 (masked out later, so any finite value does)."""
    short = steps * batch_size - t.shape[0]
    if short:
        t = torch.cat([t, t[:1].expand(short, *t.shape[1:])])
    return t.reshape(steps, batch_size, *t.shape[1:])


def client_batches(
    dataset: Any,
    cid: int,
    generator: torch.Generator,
    *,
    epochs: int,
    batch_size: int,
) -> ClientBatches:
    """Client ``cid``'s batches for ``epochs`` local epochs, drawn from
    ``generator`` as `FederatedClient` would draw them."""
    view = _fast_view(dataset, cid)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    counts: list[int] = []
    if view is not None:
        n = len(view)
        per_epoch = -(-n // batch_size)
        last = n - (per_epoch - 1) * batch_size
        orders = _replay_orders(generator, n, epochs)
        rows = [_pad(view.indices[order], per_epoch, batch_size) for order in orders]
        counts = ([batch_size] * (per_epoch - 1) + [last]) * epochs
        return ClientBatches(
            counts, rows=torch.cat(rows), source=(view.data, view.targets)
        )
    else:
        loader = dataset.get_dataloader("train", cid, batch_size, generator)
        for _ in range(epochs):
            for x, y in loader:
                if y.shape[0] > batch_size:
                    raise ConfigurationError(
                        f"client {cid}'s loader yielded a batch of {y.shape[0]} "
                        f"samples, more than batch_size={batch_size}; cohort "
                        "training pads every step to batch_size"
                    )
                xs.append(_pad(x, 1, batch_size))
                ys.append(_pad(y, 1, batch_size))
                counts.append(int(y.shape[0]))
    return ClientBatches(counts, x=torch.cat(xs), y=torch.cat(ys))
