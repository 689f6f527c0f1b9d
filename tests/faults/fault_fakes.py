"""The federation the fault matrix disturbs: softmax regression, 5 clients.

A plain module (no pytest), so that `ProcessExecutor`'s workers import the work
by reference. The matrix makes a client misbehave with the shared `Misbehave`
(tests/misbehave.py), a once-cue per fault, so each fault strikes once and the
re-run of the round succeeds; `FedAvgHandler` and `quick_processes` are the
shared ones (tests/fakes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from blazefl.sim import ClientContext
from fakes import FedAvgHandler, labelled_data, quick_processes, sampled
from misbehave import Misbehave

__all__ = [
    "FedAvgHandler",
    "Misbehave",
    "SoftmaxWork",
    "federation_handler",
    "first_sampled",
    "quick_processes",
]

FEATURES = 6
CLASSES = 3
SAMPLES = 12
BATCH = 4


def initial_params() -> torch.Tensor:
    """The global model: softmax regression weights and biases, one tensor."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(CLASSES, FEATURES + 1, generator=g) * 0.1


def client_data(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    return labelled_data(1000 + cid, (SAMPLES, FEATURES), CLASSES)


def federation_handler() -> FedAvgHandler:
    """5 clients, 3 a round, 3 rounds, sampled by its own RNG (seed 11)."""
    return FedAvgHandler(
        num_clients=5, per_round=3, rounds=3, seed=11, params=initial_params()
    )


def first_sampled(round_index: int) -> list[int]:
    """The clients a fresh `federation_handler` samples in round ``round_index``."""
    return sampled(federation_handler(), round_index)


@dataclass(frozen=True)
class SoftmaxWork:
    """Native client work: two SGD steps of softmax regression."""

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        # Draws from two of the client's streams: a wrongly committed RNG
        # state changes the numbers.
        lr = 0.1 * (1.0 + 0.1 * ctx.rng.python.random())
        order = torch.randperm(SAMPLES, generator=ctx.rng.torch_cpu)
        ctx.state["visits"] = ctx.state.get("visits", 0) + 1
        x, y = client_data(ctx.cid)
        w = payload.clone()
        losses = []
        for start in range(0, SAMPLES, BATCH):
            batch = order[start : start + BATCH]
            w.requires_grad_(True)
            logits = x[batch] @ w[:, :FEATURES].T + w[:, FEATURES]
            loss = F.cross_entropy(logits, y[batch])
            (grad,) = torch.autograd.grad(loss, w)
            w = (w - lr * grad).detach()
            losses.append(loss.item())
        ctx.metrics["loss"] = sum(losses) / len(losses)
        ctx.metrics["num_samples"] = SAMPLES
        return w, SAMPLES
