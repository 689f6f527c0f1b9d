"""Fakes shared by the sim, fault, scale and Ray suites.

A plain module (no pytest), importable by plain name from every sub-suite
(pytest's prepend import mode puts ``tests/`` on ``sys.path``, and spawned
process workers inherit it), so `ProcessExecutor` workers import the work
defined here by reference; the Ray suite ships it by value.

- `quick_processes`: a `ProcessExecutor` forking its workers from a forkserver
  with torch loaded;
- `FedAvgHandler`: a BlazeFL-style server handler (sample, send, average);
- `labelled_data`: a client's fixed data set, generated from a seed;
- `ScriptedWork`: native client work training a tiny CNN;
- `Misbehave`: the one way to make a client misbehave on cue.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from blazefl.core import deserialize_model, serialize_model
from blazefl.models import CNN
from blazefl.sim import ClientContext, ProcessExecutor
from misbehave import Misbehave, ScriptedError, active_clients

__all__ = [
    "BATCH_SIZE",
    "FORKSERVER_PRELOAD",
    "IMAGE_SIZE",
    "NUM_SAMPLES",
    "FedAvgHandler",
    "Misbehave",
    "ScriptedError",
    "ScriptedWork",
    "active_clients",
    "client_data",
    "initial_params",
    "labelled_data",
    "quick_processes",
    "sampled",
]

IMAGE_SIZE = 8
NUM_SAMPLES = 24
BATCH_SIZE = 8

#: What the forkserver imports once, so its workers start in milliseconds.
FORKSERVER_PRELOAD = [
    "torch",
    "torch.multiprocessing",
    "torch._inductor.config",  # torch.use_deterministic_algorithms imports it
    "blazefl.core",
    "blazefl.models",
    "blazefl.sim",
]


def quick_processes(max_workers: int = 1, **kwargs: Any) -> ProcessExecutor:
    """A ProcessExecutor whose workers fork from a forkserver with torch loaded.

    Spawning a worker costs a torch import (1-2 s); the behaviour tests use
    this instead and leave ``spawn`` to the tests that are about it (the start
    method changes nothing about how a death is handled).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ProcessExecutor(max_workers, start_method="forkserver", **kwargs)


def initial_params(seed: int = 0) -> torch.Tensor:
    """The tiny CNN's starting point, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return serialize_model(CNN(image_size=IMAGE_SIZE))


def labelled_data(
    seed: int, shape: tuple[int, ...], classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``shape[0]`` standard-normal samples of ``shape[1:]`` and their labels,
    the same in every process for the same seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    y = torch.randint(0, classes, (shape[0],), generator=g)
    return x, y


def client_data(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A `ScriptedWork` client's fixed local data set: 24 8x8 images, 10 classes."""
    return labelled_data(10_000 + cid, (NUM_SAMPLES, 1, IMAGE_SIZE, IMAGE_SIZE), 10)


class FedAvgHandler:
    """A BlazeFL-style server handler: sample, send the model, average in order.

    ``params`` is the global model as one tensor (default: the tiny CNN's);
    ``seed`` seeds the sampling RNG (and the default model). It counts its
    ``load``/``load_round`` and ``sample_clients`` calls, so tests can see
    that a failed round was not applied nor sampled again.
    """

    def __init__(
        self,
        *,
        num_clients: int = 10,
        per_round: int = 6,
        rounds: int = 3,
        seed: int = 0,
        params: torch.Tensor | None = None,
    ) -> None:
        self.params = initial_params(seed) if params is None else params
        self.num_clients = num_clients
        self.per_round = per_round
        self.rounds = rounds
        self.round = 0
        self.load_calls = 0
        self.sample_calls = 0
        self._rng = random.Random(seed)
        self._buffer: list[tuple[torch.Tensor, int]] = []

    def sample_clients(self) -> list[int]:
        self.sample_calls += 1
        return self._rng.sample(range(self.num_clients), self.per_round)

    def downlink_package(self) -> torch.Tensor:
        return self.params.clone()

    def load(self, package: tuple[torch.Tensor, int]) -> bool:
        self.load_calls += 1
        self._buffer.append(package)
        if len(self._buffer) < self.per_round:
            return False
        self._aggregate(self._buffer)
        self._buffer = []
        return True

    def load_round(self, packages: list[tuple[torch.Tensor, int]]) -> None:
        self.load_calls += 1
        self._aggregate(packages)

    def _aggregate(self, packages: list[tuple[torch.Tensor, int]]) -> None:
        total = sum(n for _, n in packages)
        acc = torch.zeros_like(self.params)
        for params, n in packages:
            acc += params * (n / total)
        self.params = acc
        self.round += 1

    def is_stopped(self) -> bool:
        return self.round >= self.rounds

    def get_summary(self) -> dict[str, Any]:
        return {"round": self.round, "norm": float(self.params.norm())}

    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "params": self.params.clone(),
            "rng": self._rng.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = state["round"]
        self.params = state["params"].clone()
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))


def sampled(handler: FedAvgHandler, round_index: int) -> list[int]:
    """The clients ``handler`` (fresh) samples in round ``round_index``; it is
    used up doing so."""
    for _ in range(round_index):
        handler.sample_clients()
    return handler.sample_clients()


@dataclass(frozen=True)
class ScriptedWork:
    """Native client work: a few SGD steps of a tiny CNN.

    :param salt: varies the sleeps between otherwise identical runs.
    :param max_sleep: each client first sleeps a time drawn from a generator
        seeded by (salt, cid, round), never from ``ctx.rng``, so completion
        order varies without changing any result.
    :param record: report pid, payload identity and the client's visit count
        (kept in ``ctx.state``) in ``ctx.metrics``.
    :param log: emit one ``ctx.log`` line per client.
    :param busy: seconds of CPU-bound torch work per client.

    To make it misbehave, wrap it in `Misbehave`.
    """

    salt: int = 0
    max_sleep: float = 0.0
    record: bool = False
    log: bool = False
    busy: float = 0.0

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        # One draw from every client stream: a wrongly committed RNG state shows.
        lr = 0.05 * (1.0 + 0.1 * ctx.rng.python.random())
        if self.max_sleep:
            pause = random.Random(f"{self.salt}/{ctx.cid}/{ctx.round}")
            time.sleep(pause.uniform(0.0, self.max_sleep))
        if self.busy:
            deadline = time.perf_counter() + self.busy
            a = torch.ones(64, 64)
            while time.perf_counter() < deadline:
                a = torch.tanh(a @ a / 64)
        if self.log:
            ctx.log.info("client_step", step=1, worker_label=ctx.worker)
        visits = ctx.state["visits"] = ctx.state.get("visits", 0) + 1
        if self.record:
            ctx.metrics["visits"] = visits
            ctx.metrics["pid"] = os.getpid()
            ctx.metrics["payload_id"] = id(payload)
            ctx.metrics["payload_shared"] = float(payload.is_shared())
        return self._train(ctx, payload, lr)

    def _train(
        self, ctx: ClientContext, payload: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, int]:
        model = ctx.cache.get("model")
        if model is None:
            model = ctx.cache["model"] = CNN(image_size=IMAGE_SIZE)
        deserialize_model(model, payload)
        x, y = client_data(ctx.cid)
        order = torch.randperm(NUM_SAMPLES, generator=ctx.rng.torch_cpu)
        losses = []
        for start in range(0, NUM_SAMPLES, BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            model.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
            losses.append(loss.item())
        ctx.metrics["loss"] = sum(losses) / len(losses)
        ctx.metrics["num_samples"] = NUM_SAMPLES
        return serialize_model(model), NUM_SAMPLES
