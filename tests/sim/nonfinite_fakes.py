"""Client work that hides a NaN in hard-to-see places (importable by workers).

Process workers unpickle the work by reference, so it lives here, not in the
test module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BAD = 1
"""The client whose update is spoiled."""

NAN = float("nan")


class Slotted:
    """A ``__slots__`` object holding an extra tensor of the update."""

    __slots__ = ("extra",)

    def __init__(self, extra: torch.Tensor) -> None:
        self.extra = extra


def nested(leaf: Any, levels: int) -> Any:
    """``leaf`` wrapped alternately in one-entry lists and dicts."""
    for level in range(levels):
        leaf = [leaf] if level % 2 else {"k": leaf}
    return leaf


def _extra(kind: str, spoiled: bool) -> Any:
    """An update's extra part of ``kind``; the spoiled one holds no finite data."""
    value = NAN if spoiled else 0.0
    if kind == "deep":
        return nested(torch.full((2,), value), 12)
    if kind == "slots":
        return Slotted(torch.full((2,), value))
    if kind == "set":
        return {torch.full((2,), value)}
    if kind == "module":
        net = torch.nn.BatchNorm1d(2)
        net.running_mean.fill_(value)  # a buffer, not a parameter
        return net
    if kind == "complex":
        return torch.tensor([1 + 1j, complex(value, 0.0)])
    if kind == "meta":
        # zeros, not empty: uninitialised CPU memory may hold a NaN
        return torch.zeros(2, device="meta" if spoiled else "cpu")
    raise ValueError(f"unknown kind {kind!r}")


@dataclass(frozen=True)
class SpoilingWork:
    """Every client sends ``(payload + cid, extra)``; client `BAD`'s extra is
    spoiled in the way ``kind`` names."""

    kind: str

    def __call__(self, ctx: Any, payload: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return payload + ctx.cid, _extra(self.kind, ctx.cid == BAD)


class MeanHandler:
    """Samples clients 0-2 for one round; the global model is the mean of the
    ``params`` it is given."""

    def __init__(self) -> None:
        self.params = torch.zeros(3)
        self.loaded: list[torch.Tensor] = []
        self.done = False

    def sample_clients(self) -> list[int]:
        return [0, 1, 2]

    def downlink_package(self) -> torch.Tensor:
        return self.params.clone()

    def is_stopped(self) -> bool:
        return self.done

    def load(self, package: tuple[torch.Tensor, Any]) -> bool:
        self.loaded.append(package[0])
        if len(self.loaded) < 3:
            return False
        self._aggregate()
        return True

    def load_round(self, packages: list[tuple[torch.Tensor, Any]]) -> None:
        self.loaded = [params for params, _ in packages]
        self._aggregate()

    def _aggregate(self) -> None:
        self.params = torch.stack(self.loaded).mean(dim=0)
        self.done = True


class StrictMeanHandler(MeanHandler):
    """A `MeanHandler` whose ``check_uplink`` refuses client `BAD`'s update."""

    def check_uplink(self, package: tuple[torch.Tensor, Any]) -> None:
        if torch.equal(package[0], torch.full((3,), float(BAD))):
            raise ValueError(f"update of client {BAD} is malformed")
