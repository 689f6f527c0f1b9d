"""The one local-training and evaluation routine every algorithm reuses.

FedAvg, FedProx, SCAFFOLD and the examples all call `train` for a client's
local update and `evaluate` for server- or client-side accuracy, so the loss,
the stop-event handling and the update rule are written once. Algorithms that
need to change the update (a proximal term, control variates) do it through the
`before_step` hook instead of copying the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from blazefl._exceptions import ConfigurationError

__all__ = ["StopEvent", "TrainResult", "evaluate", "train"]


class StopEvent(Protocol):
    """Anything that says whether work should stop (`threading.Event` and the
    `multiprocessing` manager's event proxies both fit)."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What one call to `train` did.

    `loss` is the sample-weighted mean cross-entropy over every batch trained
    on (0.0 when none was); `steps` counts parameter updates; `stopped` is True
    when the stop event ended training early.
    """

    loss: float
    samples: int
    steps: int
    stopped: bool


def _check_hyperparameters(epochs: int, lr: float) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigurationError(
            f"epochs must be an integer >= 1, got {epochs!r}; "
            "pass the number of local passes over the client's data"
        )
    if isinstance(lr, bool) or not isinstance(lr, int | float):
        raise ConfigurationError(f"lr must be a positive finite number, got {lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigurationError(f"lr must be a positive finite number, got {lr!r}")


def train(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    lr: float,
    device: str | torch.device = "cpu",
    stop_event: StopEvent | None = None,
    before_step: Callable[[nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` in place with plain SGD on cross-entropy.

    Use this for every client's local update. `model` must already live on
    `device`; each `(x, y)` batch from `loader` is moved there. `stop_event` is
    checked before every batch, so a cancelled client stops within one step.
    `before_step(model)` runs after `backward()` and before the update, with
    the gradients in `p.grad`: adjust them there (FedProx adds its proximal
    term, SCAFFOLD its control-variate correction).

    Given the same initial parameters and the same batch order the result is
    bitwise reproducible on a deterministic device.

    :raises ConfigurationError: when `epochs` < 1, `lr` is not a positive
        finite number, or an epoch yields no batch.
    """
    _check_hyperparameters(epochs, lr)
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.train()
    # Accumulate on the device and read back once, so there is no host sync
    # per batch on an accelerator.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    samples = 0
    steps = 0
    stopped = False
    try:
        for epoch in range(epochs):
            batches_this_epoch = 0
            for x, y in loader:
                if stop_event is not None and stop_event.is_set():
                    stopped = True
                    break
                x = x.to(device)
                y = y.to(device)
                model.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                torch.autograd.backward(loss)
                if before_step is not None:
                    before_step(model)
                # The update is written by hand rather than with torch.optim:
                # on free-threaded CPython the first torch.optim optimizer
                # imports triton, which silently re-enables the GIL for the
                # whole process and serialises every client thread.
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p.add_(p.grad, alpha=-lr)
                n = y.shape[0]
                loss_sum += loss.detach().to(torch.float64) * n
                samples += n
                steps += 1
                batches_this_epoch += 1
            if stopped:
                break
            if batches_this_epoch == 0:
                raise ConfigurationError(
                    f"the training data yielded no batch in epoch {epoch}; "
                    "a client needs at least one sample to train"
                )
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    mean_loss = loss_sum.item() / samples if samples else 0.0
    return TrainResult(loss=mean_loss, samples=samples, steps=steps, stopped=stopped)


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Return `(mean cross-entropy, accuracy)` of `model` over `loader`.

    Both are sample-weighted over the whole loader. The model runs in eval mode
    without gradients and is put back in the mode it was in.

    :raises ConfigurationError: when `loader` yields no sample.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    try:
        with torch.no_grad():
            for x, y in loader:
                x = x.to(device)
                y = y.to(device)
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").to(
                    torch.float64
                )
                correct += (logits.argmax(dim=1) == y).sum()
                total += y.shape[0]
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigurationError(
            "empty evaluation data: the loader yielded no sample; "
            "check the partition passed to evaluate()"
        )
    return loss_sum.item() / total, correct.item() / total
