"""The federation the fault matrix disturbs, and client work that faults on cue.

A plain module (no pytest), so that `ProcessExecutor`'s workers import the work
by reference. A fault is scripted by a marker file ``<fault>-r<round>-c<cid>``
in a control directory; the work removes the marker before it misbehaves, so
each fault strikes once and the re-run of the round succeeds:

- ``raise``: the client raises `FaultError`;
- ``hang``: the client waits for its stop flag (a cooperative hang);
- ``stuck``: the client sleeps and ignores its stop flag;
- ``wait``: the client writes its pid to ``running-r<round>-c<cid>`` and waits
  for its stop flag, so the test can SIGKILL the worker process mid-client;
- ``segfault``: the worker process dies of SIGSEGV (it reads address 0);
- ``abort``: the worker process dies of SIGABRT (`os.abort`).

Every fault gives up after `HANG_LIMIT_SECONDS` by raising, so a fault the
executor fails to stop shows up as a wrong error, not as a hung test.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from blazefl.sim import ClientContext, ProcessExecutor

FAULTS = ("raise", "hang", "stuck", "wait", "segfault", "abort")
HANG_LIMIT_SECONDS = 30.0
FEATURES = 6
CLASSES = 3
SAMPLES = 12
BATCH = 4

FORKSERVER_PRELOAD = [
    "torch",
    "torch.multiprocessing",
    "torch._inductor.config",
    "blazefl.core",
    "blazefl.sim",
]


def quick_processes(max_workers: int = 2, **kwargs: Any) -> ProcessExecutor:
    """A ProcessExecutor forking its workers from a forkserver with torch loaded.

    ``spawn`` costs a torch import per worker; the matrix replaces workers
    often, and the start method changes nothing about how a death is handled.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ProcessExecutor(max_workers, start_method="forkserver", **kwargs)


def initial_params() -> torch.Tensor:
    """The global model: softmax regression weights and biases, one tensor."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(CLASSES, FEATURES + 1, generator=g) * 0.1


def client_data(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + cid)
    x = torch.randn(SAMPLES, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (SAMPLES,), generator=g)
    return x, y


class FedAvgHandler:
    """Samples clients with its own RNG, sends the model, averages in slot order."""

    def __init__(
        self, *, num_clients: int = 5, per_round: int = 3, rounds: int = 3
    ) -> None:
        self.params = initial_params()
        self.num_clients = num_clients
        self.per_round = per_round
        self.rounds = rounds
        self.round = 0
        self._rng = random.Random(11)
        self._buffer: list[tuple[torch.Tensor, int]] = []

    def sample_clients(self) -> list[int]:
        return self._rng.sample(range(self.num_clients), self.per_round)

    def downlink_package(self) -> torch.Tensor:
        return self.params.clone()

    def load(self, package: tuple[torch.Tensor, int]) -> bool:
        self._buffer.append(package)
        if len(self._buffer) < self.per_round:
            return False
        self.load_round(self._buffer)
        self._buffer = []
        return True

    def load_round(self, packages: list[tuple[torch.Tensor, int]]) -> None:
        total = sum(n for _, n in packages)
        acc = torch.zeros_like(self.params)
        for params, n in packages:
            acc += params * (n / total)
        self.params = acc
        self.round += 1

    def is_stopped(self) -> bool:
        return self.round >= self.rounds

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.clone(),
            "round": self.round,
            "rng": repr(self._rng.getstate()),
        }


def sampled(round_index: int) -> list[int]:
    """The clients a fresh `FedAvgHandler` samples in round ``round_index``."""
    twin = FedAvgHandler()
    for _ in range(round_index):
        twin.sample_clients()
    return twin.sample_clients()


class FaultError(RuntimeError):
    """What a client scripted to raise raises."""


def _wait_for_stop(ctx: ClientContext) -> None:
    deadline = time.monotonic() + HANG_LIMIT_SECONDS
    while not ctx.should_stop():
        if time.monotonic() > deadline:
            raise FaultError("the stop flag was never set")
        time.sleep(0.005)


def _die(how: str) -> None:
    # No core file, whatever the machine's ulimit says.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if how == "segfault":
        ctypes.string_at(0)
    os.abort()


@dataclass(frozen=True)
class FaultWork:
    """Native client work: two SGD steps of softmax regression, plus faults."""

    control: str

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        self._fault(ctx, Path(self.control))
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

    def _fault(self, ctx: ClientContext, control: Path) -> None:
        for fault in FAULTS:
            marker = control / f"{fault}-r{ctx.round}-c{ctx.cid}"
            try:
                marker.unlink()
            except FileNotFoundError:
                continue
            if fault == "raise":
                raise FaultError(f"client {ctx.cid} failed on cue")
            if fault == "hang":
                _wait_for_stop(ctx)
                raise FaultError(f"client {ctx.cid} was stopped")
            if fault == "stuck":
                time.sleep(HANG_LIMIT_SECONDS)
                raise FaultError("a stuck client was never killed")
            if fault == "wait":
                running = control / f"running-r{ctx.round}-c{ctx.cid}"
                tmp = running.with_suffix(".tmp")
                tmp.write_text(str(os.getpid()))
                tmp.replace(running)
                _wait_for_stop(ctx)
                raise FaultError("the worker was never killed")
            _die(fault)
