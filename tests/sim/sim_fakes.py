"""Small fakes shared by the tests/sim suite: a FedAvg handler and scripted work.

They live in a plain module, not in a test file, so that `ProcessExecutor`'s
spawned workers can import the client work by reference without importing
pytest and the test modules. Misbehaviour is scripted through marker files in a
control directory, because a process worker cannot see the test's memory:

- ``hang-<cid>`` / ``hang-all``: the client waits until its stop flag is set;
- ``stuck-<cid>`` / ``stuck-all``: the client sleeps, ignoring its stop flag;
- ``raise-<cid>`` / ``raise-all``: the client raises `ScriptedError`;
- ``exit-<cid>``: the worker process running the client exits with code 3
  (the file is removed first, so it happens once).

Every client touches ``started-r<round>-c<cid>`` when it begins, so a test can
wait until clients are really running before it cancels them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import torch
import torch.nn.functional as F

from blazefl.core import deserialize_model, serialize_model
from blazefl.models import CNN
from blazefl.sim import (
    ClientContext,
    ClientFinished,
    Event,
    ProcessExecutor,
    RoundResult,
    Simulation,
)

SEED = 7
IMAGE_SIZE = 8
NUM_SAMPLES = 24
BATCH_SIZE = 8
HANG_LIMIT_SECONDS = 30.0

# What the forkserver imports once, so its workers start in milliseconds.
FORKSERVER_PRELOAD = [
    "torch",
    "torch.multiprocessing",
    "torch._inductor.config",  # torch.use_deterministic_algorithms imports it
    "blazefl.core",
    "blazefl.models",
    "blazefl.sim",
]

_active_lock = threading.Lock()
_active = 0


def active_clients() -> int:
    """How many ScriptedWork calls are running right now in this process."""
    return _active


@contextlib.contextmanager
def _count_active() -> Iterator[None]:
    global _active
    with _active_lock:
        _active += 1
    try:
        yield
    finally:
        with _active_lock:
            _active -= 1


def quick_processes(max_workers: int = 1, **kwargs: Any) -> ProcessExecutor:
    """A ProcessExecutor whose workers fork from a forkserver with torch loaded.

    Spawning a worker costs a torch import (1-2 s); the behaviour tests use
    this instead and leave ``spawn`` to the tests that are about it.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ProcessExecutor(max_workers, start_method="forkserver", **kwargs)


def initial_params(seed: int = 0) -> torch.Tensor:
    """The global model's starting point, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return serialize_model(CNN(image_size=IMAGE_SIZE))


def client_data(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A client's fixed local data set (the same in every process)."""
    g = torch.Generator().manual_seed(10_000 + cid)
    x = torch.randn(NUM_SAMPLES, 1, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    y = torch.randint(0, 10, (NUM_SAMPLES,), generator=g)
    return x, y


class FedAvgHandler:
    """A BlazeFL-style server handler: sample, send the model, average in order."""

    def __init__(
        self,
        *,
        num_clients: int = 10,
        per_round: int = 6,
        rounds: int = 3,
        seed: int = 0,
    ) -> None:
        self.params = initial_params(seed)
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


def _marker(control: Path, action: str, cid: int) -> Path | None:
    for name in (f"{action}-{cid}", f"{action}-all"):
        path = control / name
        if path.exists():
            return path
    return None


class ScriptedError(RuntimeError):
    """What a client scripted to fail raises."""


@dataclass(frozen=True)
class ScriptedWork:
    """Native client work: a few SGD steps of a tiny CNN, plus scripted trouble.

    :param control: directory of marker files (see the module docstring).
    :param salt: varies the sleeps between otherwise identical runs.
    :param max_sleep: each client first sleeps a time drawn from a generator
        seeded by (salt, cid, round), never from ``ctx.rng``, so completion
        order varies without changing any result.
    :param record: report pid, payload identity and the client's visit count
        (kept in ``ctx.state``) in ``ctx.metrics``.
    :param log: emit one ``ctx.log`` line per client.
    :param busy: seconds of CPU-bound torch work per client.
    """

    control: str | None = None
    salt: int = 0
    max_sleep: float = 0.0
    record: bool = False
    log: bool = False
    busy: float = 0.0

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        with _count_active():
            return self._run(ctx, payload)

    def _run(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        # One draw from every client stream: a wrongly committed RNG state shows.
        lr = 0.05 * (1.0 + 0.1 * ctx.rng.python.random())
        if self.control is not None:
            outcome = self._script(ctx, Path(self.control))
            if outcome is not None:
                return outcome
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

    def _script(self, ctx: ClientContext, control: Path) -> Any:
        (control / f"started-r{ctx.round}-c{ctx.cid}").touch()
        exit_marker = _marker(control, "exit", ctx.cid)
        if exit_marker is not None:
            exit_marker.unlink()
            os._exit(3)
        if _marker(control, "raise", ctx.cid) is not None:
            raise ScriptedError(f"scripted failure of client {ctx.cid}")
        if _marker(control, "hang", ctx.cid) is not None:
            deadline = time.monotonic() + HANG_LIMIT_SECONDS
            while not ctx.should_stop():
                if time.monotonic() > deadline:
                    raise ScriptedError("the stop flag was never set")
                time.sleep(0.005)
            (control / f"stopped-r{ctx.round}-c{ctx.cid}").touch()
            return "stopped"
        if _marker(control, "stuck", ctx.cid) is not None:
            time.sleep(HANG_LIMIT_SECONDS)
            raise ScriptedError("a stuck client was never killed")
        return None

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


class RecordingHandler:
    """Sends a small tensor to clients [0, 1, 2] and keeps what they send back."""

    def __init__(self, rounds: int = 2) -> None:
        self.rounds = rounds
        self.received: list[Any] = []

    def sample_clients(self) -> list[int]:
        return [0, 1, 2]

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(4)

    def load(self, package: Any) -> bool:
        self.received.append(package)
        return len(self.received) % 3 == 0

    def is_stopped(self) -> bool:
        return len(self.received) >= 3 * self.rounds


def aliased_uplink(ctx: ClientContext, payload: torch.Tensor) -> dict[str, Any]:
    """An uplink in which two entries are the same tensor (like tied weights)."""
    weight = torch.full((8,), float(ctx.cid))
    return {"encoder": weight, "decoder": weight}


def digest(handler: FedAvgHandler, results: list[RoundResult]) -> dict[str, Any]:
    """What must be bitwise equal between two runs of the same federation."""
    return {
        "params": handler.params,
        "metrics": [dict(r.metrics) for r in results],
        "client_metrics": [[dict(c.metrics) for c in r.clients] for r in results],
        "cids": [r.cids for r in results],
        "summary": [dict(r.summary) for r in results],
    }


async def drain(stream: Any) -> list[Event]:
    """Every event left in a stream whose simulation has closed."""
    async with stream:
        return [event async for event in stream]


async def run_federation(
    sim: Simulation[Any, Any], rounds: int | None = None
) -> tuple[list[Any], list[Event]]:
    """Run ``sim`` to the end (or ``rounds``); return its results and events."""
    async with sim:
        stream = sim.events()
        results = await sim.run(rounds)
    return results, await drain(stream)


def finish_order(events: list[Event], round_index: int) -> list[int]:
    """The slots of one round's ClientFinished events, in completion order."""
    return [
        e.slot
        for e in events
        if isinstance(e, ClientFinished) and e.round == round_index
    ]


async def wait_for(predicate: Any, within: float = 20.0) -> None:
    """Poll ``predicate`` until it is true (fails the test after ``within`` s)."""
    with anyio.fail_after(within):
        # What we wait for (a file, a process exit) cannot set an anyio.Event.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)
