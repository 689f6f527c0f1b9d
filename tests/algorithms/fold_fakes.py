"""Fakes for the fold tests (a module of its own: worker processes import it).

`RecordingServer` records which client each fold step added, on which
thread; `CountingMean` counts the rounds it had to compute from the collected
updates (a folded round never asks it); the FedAvg variants make slot 0
finish last or client `FAILING_CID` fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from blazefl.algorithms import (
    Broadcast,
    ClientUpdate,
    FedAvg,
    FederatedServer,
    LocalTraining,
    RoundUpdates,
    WeightedMean,
)
from blazefl.algorithms._fold import RoundFold
from blazefl.sim import ClientContext

#: The client `FailingFedAvg` makes fail.
FAILING_CID = 3


class RecordingFold(RoundFold):
    """A `RoundFold` that notes each update it adds (cid, thread name)."""

    def __init__(self, inner: RoundFold, log: list[tuple[int, str]]) -> None:
        super().__init__(inner._fold)
        self._log = log

    def add(self, update: Any) -> None:
        self._log.append((update.cid, threading.current_thread().name))
        super().add(update)


class RecordingServer(FederatedServer):
    """A FederatedServer whose folds record their steps (``folds``); with
    ``fold=False`` it never folds (the collected path, for comparison)."""

    def __init__(self, *args: Any, fold: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fold = fold
        self.folds: list[list[tuple[int, str]]] = []

    def round_fold(self) -> RoundFold | None:
        inner = super().round_fold()
        if inner is None or not self.fold:
            return None
        self.folds.append([])
        return RecordingFold(inner, self.folds[-1])


@dataclass(frozen=True)
class CountingMean(WeightedMean):
    """The weighted mean, counting the rounds computed from collected updates."""

    collected: ClassVar[list[int]] = []

    def next_model(self, updates: RoundUpdates) -> torch.Tensor:
        self.collected.append(len(updates))
        return super().next_model(updates)


@dataclass(frozen=True)
class SlowFirstFedAvg(FedAvg):
    """FedAvg whose slot-0 client finishes after the others of its round."""

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        if ctx.slot == 0:
            time.sleep(0.3)
        return super().client_update(ctx, local, broadcast)


@dataclass(frozen=True)
class FailingFedAvg(FedAvg):
    """FedAvg whose client `FAILING_CID` raises."""

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        if ctx.cid == FAILING_CID:
            raise RuntimeError(f"client {ctx.cid} fails on purpose")
        return super().client_update(ctx, local, broadcast)


@dataclass(frozen=True)
class BlockingFedAvg(FedAvg):
    """FedAvg whose slot-1 client waits for its stop flag (a round to cancel)."""

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        if ctx.slot == 1:
            deadline = time.monotonic() + 30
            while not ctx.stop_event.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            raise RuntimeError("stopped")
        return super().client_update(ctx, local, broadcast)


def old_weighted_mean(
    models: Sequence[torch.Tensor], weights: Sequence[int]
) -> torch.Tensor:
    """The weighted mean of blazefl before the model-dtype default, written
    out: Σ (wₖ/Σw)·xₖ accumulated in float64, rounded once."""
    import math

    total = math.fsum(weights)
    acc = torch.zeros_like(models[0], dtype=torch.float64)
    for model, weight in zip(models, weights, strict=True):
        acc.add_(model.to(torch.float64), alpha=weight / total)
    return acc.to(models[0].dtype)
