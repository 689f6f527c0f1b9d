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

A chunk keeps its replayed clients' draws as epoch orders (`Drawn`, via
`draw`) and turns all of them into padded batches at once (`gather_chunk`:
a handful of tensor ops for the chunk rather than several per client, the
same rows the per-client padding of `Drawn.batches` gives).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data import TensorPartitionedDataset
from blazefl.data._loader import TensorView, make_loader

__all__ = [
    "ClientBatches",
    "Drawn",
    "client_batches",
    "draw",
    "gather_chunk",
    "replay_matches_loader",
]


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
    generator: torch.Generator,
    n: int,
    epochs: int,
    scratch: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    seed = torch.empty((), dtype=torch.int64) if scratch is None else scratch
    orders = []
    for _ in range(epochs):
        seed.random_(generator=generator)
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


def fast_loader(dataset: Any) -> bool:
    """Whether ``dataset``'s train loaders can be replayed (the stock one)."""
    stock = type(dataset).get_dataloader is TensorPartitionedDataset.get_dataloader
    return stock and replay_matches_loader()


def _fast_view(dataset: Any, cid: int) -> TensorView | None:
    if not fast_loader(dataset):
        return None
    view = dataset.get_dataset("train", cid)
    if type(view) is not TensorView:
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
        orders = _replay_orders(generator, len(view), epochs)
        return Drawn(view, orders).batches(batch_size)
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


@dataclass(frozen=True, slots=True)
class Drawn:
    """One client's epoch orders drawn on the replay path, not yet gathered:
    `gather_chunk` turns a whole chunk of them into batches at once."""

    view: TensorView
    orders: list[torch.Tensor]

    def batches(self, batch_size: int) -> ClientBatches:
        """This client alone as `ClientBatches` (what `client_batches` gives)."""
        view, n = self.view, len(self.view)
        per_epoch = -(-n // batch_size)
        last = n - (per_epoch - 1) * batch_size
        rows = [_pad(view.indices[o], per_epoch, batch_size) for o in self.orders]
        counts = ([batch_size] * (per_epoch - 1) + [last]) * len(self.orders)
        return ClientBatches(
            counts, rows=torch.cat(rows), source=(view.data, view.targets)
        )


def draw(
    dataset: Any,
    view: Any,
    cid: int,
    generator: torch.Generator,
    *,
    fast: bool,
    epochs: int,
    batch_size: int,
    scratch: torch.Tensor,
) -> Drawn | ClientBatches:
    """Client ``cid``'s draws for a chunk: its epoch orders where ``fast`` (the
    replay path holds, `fast_loader`) and ``view`` is a `TensorView`, else its
    batches from the real loader (`client_batches`)."""
    if fast and type(view) is TensorView:
        return Drawn(view, _replay_orders(generator, len(view), epochs, scratch))
    return client_batches(dataset, cid, generator, epochs=epochs, batch_size=batch_size)


def gather_chunk(
    drawn: list[Drawn], batch_size: int, epochs: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A chunk's ``(k, total, b, ...)`` inputs, targets and ``(k, total)``
    sample counts, for clients that share one data set's tensors.

    The same rows `Drawn.batches` and the per-client padding give (a short
    step repeats its epoch's first row, a step a client does not take its
    first row; both are masked out), built with a handful of tensor ops for
    the whole chunk instead of several per client.
    """
    b = batch_size
    k = len(drawn)
    n = torch.tensor([len(d.view) for d in drawn], dtype=torch.int64)
    indices = torch.cat([d.view.indices for d in drawn])
    orders = torch.cat([o for d in drawn for o in d.orders])
    base = torch.cumsum(n, 0) - n  # client i's first row in `indices`
    flat = indices[orders + torch.repeat_interleave(base, n * epochs)]
    start = (base * epochs).view(k, 1, 1)  # client i's first row in `flat`
    per_epoch = ((n + b - 1) // b).view(k, 1, 1)
    steps = per_epoch * epochs
    total = int(steps.max())
    s = torch.arange(total).view(1, total, 1)
    within = (s % per_epoch) * b + torch.arange(b).view(1, 1, b)
    nv = n.view(k, 1, 1)
    taken = s < steps
    pos = start + (s // per_epoch) * nv + torch.where(within < nv, within, 0)
    pos = torch.where(taken, pos, start)
    rows = flat[pos]
    counts = (taken & (within < nv)).sum(2)
    data, targets = drawn[0].view.data, drawn[0].view.targets
    return data[rows], targets[rows], counts
