"""DS-FL (Itahara et al., IEEE TMC 2021) on blazefl's coordinator.

Clients never upload parameters. Each round every sampled client

1. distils its own model on the global soft labels the server sent for last
   round's open subset,
2. trains on its private labelled data (`blazefl.training.train`), and
3. uploads its predicted class probabilities on this round's open subset.

The server averages the probabilities, sharpens them with Entropy Reduction
Aggregation (ERA), distils its own model on them (that model is only used to
report accuracy) and broadcasts the sharpened labels with the next open subset.

Each client keeps its own model across rounds in ``ctx.state`` (the
coordinator's per-client state), so nothing here averages parameters and
`blazefl.algorithms` (built for parameter averaging) is not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from blazefl import ConfigurationError
from blazefl.core import deserialize_model, serialize_model
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo, build_model
from blazefl.reproducibility import create_rng_suite, torch_threads
from blazefl.sim import ClientContext, StopFlag
from blazefl.training import evaluate, train

__all__ = [
    "DSFLClientWork",
    "DSFLPayload",
    "DSFLServer",
    "DSFLUplink",
    "distill",
    "entropy",
    "era",
    "make_data",
    "predict",
]


# -- packages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DSFLPayload:
    """What the server sends every sampled client in a round.

    ``open_indices`` are the rows of the open set to label this round. The
    global soft labels of the previous round (``teacher_labels``, one row per
    entry of ``teacher_indices``) are ``None`` in the first round.
    """

    round: int
    open_indices: torch.Tensor
    teacher_indices: torch.Tensor | None = None
    teacher_labels: torch.Tensor | None = None


@dataclass(frozen=True, slots=True)
class DSFLUplink:
    """What one client sends back: class probabilities on the open subset."""

    cid: int
    soft_labels: torch.Tensor


# -- data ---------------------------------------------------------------------


def make_data(
    num_clients: int,
    *,
    seed: int,
    open_samples: int,
    test_samples: int = 1000,
    samples_per_client: int = 128,
    alpha: float = 0.5,
) -> tuple[SyntheticPartitionedDataset, torch.Tensor]:
    """The clients' private data (non-IID) and the open set's inputs.

    The open set must come from the same classes (the same prototypes) as the
    private data, so it is carved out of one larger draw of the server-side
    test split: the first `test_samples` rows stay the test set, the rest
    become the open set, whose labels are dropped here and never seen again.
    """
    data = SyntheticPartitionedDataset(
        num_clients,
        seed=seed,
        samples_per_client=samples_per_client,
        alpha=alpha,
        test_samples=test_samples + open_samples,
    )
    test = data.get_dataloader("test", None, batch_size=None)
    x, y = next(iter(test))
    open_x = x[test_samples:].clone()
    data.set_dataset(
        "test", None, torch.utils.data.TensorDataset(x[:test_samples], y[:test_samples])
    )
    return data, open_x


# -- the three numerical pieces ------------------------------------------------


def era(mean_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy Reduction Aggregation: ``softmax(mean_probs / temperature)``.

    The paper applies a temperature softmax to the averaged *probabilities*.
    With ``temperature < 1`` a soft average (clients that disagree, which is
    what non-IID clients do) becomes sharper, so the distilled models are not
    pulled towards "every class a bit"; a confident average stays confident
    but never exactly one-hot (with 10 classes and T=0.1 at most 0.9996).
    """
    return F.softmax(mean_probs / temperature, dim=1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """The Shannon entropy (nats) of each row of ``probs``."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, device: str, batch_size: int = 512
) -> torch.Tensor:
    """Class probabilities of ``model`` on ``x``, as a float32 CPU tensor."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            F.softmax(model(x[i : i + batch_size].to(device)), dim=1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def distill(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    device: str,
    stop_event: StopFlag | None = None,
) -> float:
    """Fit ``model`` to soft ``targets`` on ``x`` with plain SGD; the mean loss.

    The loss is the soft cross-entropy ``-Σ t·log softmax(model(x))``, which
    has the gradient of KL(t ‖ model). Batches are shuffled by ``generator``
    alone. Like `blazefl.training.train`, the update is written by hand rather
    than with torch.optim (whose import re-enables the GIL on free-threaded
    CPython) and ``stop_event`` is checked before every batch.
    """
    n = x.shape[0]
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    loss_sum, seen = 0.0, 0
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                if stop_event is not None and stop_event.is_set():
                    return loss_sum / max(seen, 1)
                rows = order[start : start + batch_size]
                xb, tb = x[rows].to(device), targets[rows].to(device)
                model.zero_grad(set_to_none=True)
                loss = -(tb * F.log_softmax(model(xb), dim=1)).sum(dim=1).mean()
                torch.autograd.backward(loss)
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p.add_(p.grad, alpha=-lr)
                loss_sum += loss.item() * rows.numel()
                seen += rows.numel()
    finally:
        model.zero_grad(set_to_none=True)
    return loss_sum / max(seen, 1)


# -- the client ---------------------------------------------------------------


@dataclass(frozen=True)
class DSFLClientWork:
    """Native client work for DS-FL: distil, train privately, label the open set.

    Each client's own model lives in ``ctx.state["params"]`` (a flat tensor the
    coordinator keeps per client and commits only when the round commits); the
    ``nn.Module`` it is loaded into is a per-worker scratch object in
    ``ctx.cache``. All randomness (initial weights, batch order) comes from
    ``ctx.rng``, so a client computes the same thing on any worker.
    """

    model_selector: ModelZoo
    model_name: str
    dataset: SyntheticPartitionedDataset
    open_x: torch.Tensor
    epochs: int = 2
    distill_epochs: int = 2
    batch_size: int = 32
    lr: float = 0.1
    distill_lr: float = 0.1

    def __call__(self, ctx: ClientContext, payload: DSFLPayload) -> DSFLUplink:
        model = self._model(ctx)
        params = ctx.state.get("params")
        if params is None:
            # First participation: this client's own initial weights.
            seed = ctx.rng.python.getrandbits(31)
            params = serialize_model(
                build_model(self.model_selector, self.model_name, seed)
            )
        deserialize_model(model, params)

        if payload.teacher_labels is not None and payload.teacher_indices is not None:
            ctx.metrics["distill_loss"] = distill(
                model,
                self.open_x[payload.teacher_indices],
                payload.teacher_labels,
                epochs=self.distill_epochs,
                lr=self.distill_lr,
                batch_size=self.batch_size,
                generator=ctx.rng.torch_cpu,
                device=ctx.device,
                stop_event=ctx.stop_event,
            )

        loader = self.dataset.get_dataloader(
            "train", ctx.cid, self.batch_size, ctx.rng.torch_cpu
        )
        result = train(
            model,
            loader,
            epochs=self.epochs,
            lr=self.lr,
            device=ctx.device,
            stop_event=ctx.stop_event,
        )
        ctx.metrics["loss"] = result.loss
        ctx.metrics["num_samples"] = float(self.dataset.client_size(ctx.cid))

        soft_labels = predict(model, self.open_x[payload.open_indices], ctx.device)
        ctx.state["params"] = serialize_model(model)
        return DSFLUplink(ctx.cid, soft_labels)

    def _model(self, ctx: ClientContext) -> nn.Module:
        key = f"dsfl-{self.model_name}-{ctx.device}"
        model: nn.Module | None = ctx.cache.get(key)
        if model is None:
            model = build_model(self.model_selector, self.model_name).to(ctx.device)
            ctx.cache[key] = model
        return model


# -- the server ---------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


class DSFLServer:
    """A BlazeFL server handler for DS-FL.

    Samples ``int(num_clients * sample_ratio)`` clients and ``open_size`` rows
    of the open set per round from its own RNG suite (seeded by ``seed``);
    aggregates the clients' probabilities with `era`; distils its global model
    on them for ``distill_epochs`` and reports that model's test accuracy in
    `get_summary`.
    """

    def __init__(
        self,
        model_selector: ModelZoo,
        model_name: str,
        *,
        dataset: SyntheticPartitionedDataset,
        open_x: torch.Tensor,
        num_clients: int,
        rounds: int,
        sample_ratio: float = 1.0,
        open_size: int = 500,
        temperature: float = 0.1,
        distill_epochs: int = 2,
        distill_lr: float = 0.1,
        batch_size: int = 32,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.num_clients = _check_int("num_clients", num_clients)
        self.rounds = _check_int("rounds", rounds)
        self.open_size = _check_int("open_size", open_size)
        if self.open_size > open_x.shape[0]:
            raise ConfigurationError(
                f"open_size={open_size} exceeds the open set's {open_x.shape[0]} rows"
            )
        if not 0 < sample_ratio <= 1:
            raise ConfigurationError(
                f"sample_ratio must be in (0, 1], got {sample_ratio!r}"
            )
        self.clients_per_round = max(1, int(num_clients * sample_ratio))
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigurationError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = temperature
        self.distill_epochs = _check_int("distill_epochs", distill_epochs)
        self.distill_lr = distill_lr
        self.batch_size = _check_int("batch_size", batch_size)
        self.dataset = dataset
        self.open_x = open_x
        self.device = device
        self.model = build_model(model_selector, model_name, seed).to(device)
        self.rng = create_rng_suite(seed)
        self.round = 0
        self.open_indices = self._draw_open_subset()
        self.teacher: tuple[torch.Tensor, torch.Tensor] | None = None
        self._pending: list[DSFLUplink] = []

    # -- the BlazeFL handler protocol ---------------------------------------

    def sample_clients(self) -> list[int]:
        return sorted(
            self.rng.python.sample(range(self.num_clients), self.clients_per_round)
        )

    def downlink_package(self) -> DSFLPayload:
        if self.teacher is None:
            return DSFLPayload(self.round, self.open_indices)
        return DSFLPayload(self.round, self.open_indices, *self.teacher)

    def is_stopped(self) -> bool:
        return self.round >= self.rounds

    def load(self, package: DSFLUplink) -> bool:
        """Take one client's soft labels; aggregate once the round is complete."""
        self._pending.append(package)
        if len(self._pending) < self.clients_per_round:
            return False
        self.load_round(self._pending)
        return True

    def load_round(self, packages: Sequence[DSFLUplink]) -> None:
        """Aggregate a round (also one with dropped clients) and distil on it."""
        if not packages:
            raise ConfigurationError("a round needs at least one client's soft labels")
        expected = (self.open_size, self.dataset.num_classes)
        total = torch.zeros(expected, dtype=torch.float64)
        for package in packages:  # slot order, float64: the same on every executor
            if tuple(package.soft_labels.shape) != expected:
                raise ConfigurationError(
                    f"client {package.cid} sent soft labels of shape "
                    f"{tuple(package.soft_labels.shape)}, expected {expected}"
                )
            total += package.soft_labels.to(torch.float64)
        labels = era(total / len(packages), self.temperature).to(torch.float32)
        # torch's intra-op thread count is process-wide and only the in-process
        # executors pin it; pin it here too so the server's float results do
        # not depend on which executor ran the clients.
        with torch_threads(1):
            distill(
                self.model,
                self.open_x[self.open_indices],
                labels,
                epochs=self.distill_epochs,
                lr=self.distill_lr,
                batch_size=self.batch_size,
                generator=self.rng.torch_cpu,
                device=self.device,
            )
        self.teacher = (self.open_indices, labels)
        self.round += 1
        self.open_indices = self._draw_open_subset()
        self._pending = []

    def get_summary(self) -> dict[str, Any]:
        loader = self.dataset.get_dataloader("test", None, 256)
        with torch_threads(1):
            loss, accuracy = evaluate(self.model, loader, self.device)
        return {"server_acc": accuracy, "server_loss": loss}

    def _draw_open_subset(self) -> torch.Tensor:
        n = self.open_x.shape[0]
        return torch.randperm(n, generator=self.rng.torch_cpu)[: self.open_size]
