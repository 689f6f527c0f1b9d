"""A small HTTP service that runs FedAvg simulations and streams their progress.

Run it with ``python app.py`` (or, from this folder, ``uvicorn app:app
--timeout-graceful-shutdown 10``: see README.md on shutdown); it
listens on 127.0.0.1:8000 only.

- ``POST /simulations``           start one (JSON body, see `SimConfig`) -> 202 + id
- ``GET /simulations/{id}``       status, rounds done, last accuracy
- ``GET /simulations/{id}/events``  progress as server-sent events, replayed
  from the start for late subscribers, ending with ``event: done``
- ``DELETE /simulations/{id}``    cancel it
- ``GET /health``                 answers at once, even while clients train

The simulations run as tasks of one anyio task group that the app's lifespan
owns; there is no thread of the service's own. The coordinator
(`blazefl.sim.Simulation`) awaits its clients on a `ThreadExecutor`, so local
training runs on worker threads and the event loop stays free to answer
requests. On shutdown the lifespan cancels every running simulation and waits
until each has closed its executor.

Every malformed request gets a 4xx with a JSON error: bodies are read up to
`MAX_BODY_BYTES` and parsed only when they nest at most `MAX_JSON_DEPTH`
deep, ``Last-Event-ID`` must be an id the stream sent, and what a simulation
asks for (the product of its fields) must fit the memory budget by
`blazefl.sim.estimate_memory`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from blazefl.contrib import FedAvgBaseServerHandler, FedAvgClientWork
from blazefl.dashboard import HEARTBEAT, EventLog, last_event_id
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import (
    Event,
    EventStream,
    InlineExecutor,
    MemoryEstimate,
    Simulation,
    ThreadExecutor,
    estimate_memory,
    memory_limit,
)

HOST = "127.0.0.1"
PORT = 8000
# Running simulations at once; more are refused with 429 (each one trains on
# `workers` threads of this process).
MAX_RUNNING = 4
# How long DELETE waits for a cancelled simulation to stop its clients (a
# thread client gets 5 s to notice its stop flag).
CANCEL_WAIT_SECONDS = 10.0
# An SSE comment this often keeps idle connections (and proxies) alive.
HEARTBEAT_SECONDS = 15.0
# The largest request body read: a simulation's settings are a few hundred
# bytes. Longer bodies get 413 before they are read to the end.
MAX_BODY_BYTES = 16 * 1024
# The deepest JSON nesting parsed (a valid body is one flat object): deeper
# bodies are refused before the parser, which recurses once per level, runs.
MAX_JSON_DEPTH = 32
# The server-side test set of every simulation (SyntheticPartitionedDataset's).
TEST_SAMPLES = 1000

# -- configuration -------------------------------------------------------------


class ValidationError(ValueError):
    """A bad request body; ``field`` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RequestError(Exception):
    """A request refused with a 4xx ``status`` and a JSON error body."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut short: a message never echoes a whole body back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (lo <= value <= hi)
        ):
            raise ValidationError(
                name, f"must be an integer in [{lo}, {hi}], got {_shown(value)}"
            )
        return value

    return check


def _float(lo: float, hi: float, *, lo_open: bool) -> Callable[[str, Any], float]:
    interval = f"{'(' if lo_open else '['}{lo}, {hi}]"

    def check(name: str, value: Any) -> float:
        ok = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and (lo < value if lo_open else lo <= value)
            and value <= hi
        )
        if not ok:
            raise ValidationError(
                name, f"must be a number in {interval}, got {_shown(value)}"
            )
        return float(value)

    return check


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValidationError(
                name, f"must be one of {', '.join(allowed)}; got {_shown(value)}"
            )
        return value

    return check


@dataclass(frozen=True)
class SimConfig:
    """One simulation's settings: the JSON body of ``POST /simulations``."""

    clients: int = 10
    rounds: int = 5
    sample_ratio: float = 0.5
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    seed: int = 0
    executor: str = "threads"
    workers: int = 2
    model: str = "cnn"
    samples_per_client: int = 128


# field -> check; the check's message states the allowed range.
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "clients": _int(1, 1000),
    "rounds": _int(1, 1000),
    "sample_ratio": _float(0.0, 1.0, lo_open=True),
    "epochs": _int(1, 50),
    "batch_size": _int(1, 4096),
    "lr": _float(0.0, 10.0, lo_open=True),
    "seed": _int(0, 2**32 - 1),
    "executor": _choice("threads", "inline"),
    "workers": _int(1, 64),
    "model": _choice("cnn", "mlp"),
    "samples_per_client": _int(1, 10_000),
}


def _nesting(text: str) -> int:
    """How deeply ``text``'s JSON arrays and objects nest (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_body(raw: bytes) -> Any:
    """A request body as JSON (empty: ``{}``); `ValidationError` for bytes
    that are not UTF-8, JSON nested deeper than `MAX_JSON_DEPTH`, or not JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            "body",
            f"is not UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "send a JSON object",
        ) from None
    if not text.strip():
        return {}
    if _nesting(text) > MAX_JSON_DEPTH:
        raise ValidationError(
            "body",
            f"nests JSON more than {MAX_JSON_DEPTH} levels deep; it must be one "
            "flat JSON object of settings",
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None


def parse_config(body: Any) -> SimConfig:
    """Validate a request body; raise `ValidationError` naming the bad field."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    unknown = sorted(set(body) - set(_CHECKS))
    if unknown:
        raise ValidationError(
            unknown[0],
            f"unknown field; allowed fields are {', '.join(_CHECKS)}",
        )
    values = {name: _CHECKS[name](name, value) for name, value in body.items()}
    config = SimConfig(**values)
    if int(config.clients * config.sample_ratio) < 1:
        raise ValidationError(
            "sample_ratio",
            f"samples no client per round: clients * sample_ratio = "
            f"{config.clients} * {config.sample_ratio} < 1; must be >= "
            f"{1 / config.clients:g} for {config.clients} clients",
        )
    return config


def estimate_simulation(config: SimConfig) -> MemoryEstimate:
    """`blazefl.sim.estimate_memory` of the simulation `build_simulation`
    makes: the product of the fields (clients x samples_per_client for the
    data, the model x workers, ...), not each field alone."""
    with torch.device("meta"):  # the model's shapes, no memory
        model = ModelZoo(input_shape=(1, 12, 12), num_classes=10).select_model(
            config.model
        )
    return estimate_memory(
        clients=config.clients,
        clients_per_round=int(config.clients * config.sample_ratio),
        rounds=config.rounds,
        train_samples=config.clients * config.samples_per_client,
        test_samples=TEST_SAMPLES,
        sample_bytes=4 * 12 * 12,
        model_params=sum(p.numel() for p in model.parameters()),
        workers=config.workers if config.executor == "threads" else 1,
    )


def build_simulation(config: SimConfig) -> Simulation[Any, Any]:
    """FedAvg on the built-in synthetic data (CPU work: call it off the loop)."""
    dataset = SyntheticPartitionedDataset(
        num_clients=config.clients,
        seed=config.seed,
        samples_per_client=config.samples_per_client,
        test_samples=TEST_SAMPLES,
    )
    zoo = ModelZoo(input_shape=(1, 12, 12), num_classes=10)
    handler = FedAvgBaseServerHandler(
        model_selector=zoo,
        model_name=config.model,
        dataset=dataset,
        global_round=config.rounds,
        num_clients=config.clients,
        sample_ratio=config.sample_ratio,
        device="cpu",
        batch_size=config.batch_size,
        seed=config.seed,
    )
    work = FedAvgClientWork(
        zoo, config.model, dataset, config.epochs, config.batch_size, config.lr
    )
    executor = (
        ThreadExecutor(config.workers)
        if config.executor == "threads"
        else InlineExecutor()
    )
    return Simulation(handler, work, executor=executor, seed=config.seed)


# -- events as JSON -------------------------------------------------------------


def event_data(event: Event) -> dict[str, Any]:
    data = event.to_json()
    del data["event"]  # the SSE frame names it
    data.pop("traceback", None)  # ClientFailed's: server internals, logged only
    return data


def _describe_error(exc: BaseException) -> str:
    # A task group wraps what escaped it: report the error inside.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


# -- one simulation -------------------------------------------------------------


class Run:
    """A simulation's bookkeeping: status, the event history, the cancel scope."""

    def __init__(
        self, run_id: str, config: SimConfig, memory: int | None = None
    ) -> None:
        self.id = run_id
        self.config = config
        #: the estimate it was admitted with (bytes), held until it ends
        self.memory = memory or 0
        self.status = "running"
        self.rounds_done = 0
        self.last_accuracy: float | None = None
        self.error: str | None = None
        # Every event so far, as its events.jsonl object; SSE subscribers
        # replay it (blazefl.dashboard's log: the dashboard streams the same).
        self.log = EventLog()
        self.scope = anyio.CancelScope()
        self.ended = anyio.Event()

    @property
    def active(self) -> bool:
        return not self.ended.is_set()

    def publish(self, name: str, data: Mapping[str, Any]) -> None:
        self.log.append({"event": name, **data})

    def record(self, event: Event) -> None:
        data = event_data(event)
        if event.name == "round_finished":
            self.rounds_done = data["round"] + 1
            acc = data["summary"].get("server_acc")
            if acc is not None:
                self.last_accuracy = acc
        self.publish(event.name, data)

    def cancel(self) -> None:
        self.scope.cancel()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "rounds_done": self.rounds_done,
            "rounds": self.config.rounds,
            "last_accuracy": self.last_accuracy,
            "error": self.error,
            "config": asdict(self.config),
        }

    async def execute(self) -> None:
        """The simulation task: build, run every round, then say ``done``.

        The event pump lives in a task group *outside* ``self.scope``, and
        errors are caught before they reach that group, so a cancelled or
        failed round still lets the pump collect its ``round_aborted`` event;
        the pump ends when the simulation closes its event streams.
        """
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as pumps:
                with self.scope:
                    try:
                        sim = await anyio.to_thread.run_sync(
                            build_simulation, self.config
                        )
                        pumps.start_soon(self._pump, sim.events())
                        async with sim:  # closes the executor on every way out
                            await sim.run()
                    except Exception as exc:  # e.g. RoundFailedError
                        failure = exc
            if failure is not None:
                self.status = "failed"
                self.error = _describe_error(failure)
            elif self.scope.cancelled_caught:
                self.status = "cancelled"
            else:
                self.status = "finished"
        except anyio.get_cancelled_exc_class():
            self.status = "cancelled"  # the service is shutting down
            raise
        except Exception as exc:  # reported to the client, never re-raised
            self.status = "failed"
            self.error = _describe_error(exc)
        finally:
            self.publish(
                "done",
                {
                    "status": self.status,
                    "rounds_done": self.rounds_done,
                    "last_accuracy": self.last_accuracy,
                    "error": self.error,
                },
            )
            self.log.close()  # streams end after "done"
            self.ended.set()

    async def _pump(self, events: EventStream) -> None:
        async with events:
            async for event in events:
                self.record(event)

    async def sse(self, after: int = 0) -> AsyncIterator[bytes]:
        """The history after event ``after``, then live events, as SSE frames."""
        async with aclosing(self.log.follow(after, idle=HEARTBEAT_SECONDS)) as items:
            async for item in items:
                yield HEARTBEAT if item is None else self.log.frame(item[0])


# -- the service ----------------------------------------------------------------


class Service:
    """The routes' state. ``memory_budget`` (bytes) bounds the memory
    estimates of the simulations running at once; None: measure it when the
    service starts (`blazefl.sim.memory_limit`: the smaller of MemAvailable
    and the cgroup's headroom)."""

    def __init__(self, memory_budget: int | None = None) -> None:
        self.runs: dict[str, Run] = {}
        self.tasks: anyio.abc.TaskGroup | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.memory_budget = memory_budget

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()  # uvicorn runs asyncio
        if self.memory_budget is None:
            self.memory_budget = memory_limit().limit
        async with anyio.create_task_group() as tasks:
            self.tasks = tasks
            try:
                yield
            finally:
                self.stop()
        # The task group waited for every simulation to close its executor.

    def stop(self) -> None:
        """Refuse new simulations and cancel the running ones (idempotent)."""
        self.tasks = None
        for run in self.runs.values():
            run.cancel()

    def stop_threadsafe(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop)

    def lookup(self, request: Request) -> Run | None:
        return self.runs.get(request.path_params["sim_id"])

    async def health(self, request: Request) -> Response:
        running = sum(run.active for run in self.runs.values())
        return JSONResponse({"status": "ok", "running": running})

    async def create(self, request: Request) -> Response:
        if self.tasks is None:
            return _error(503, "the service is shutting down")
        try:
            config = parse_config(parse_body(await _read_body(request)))
            memory = self._admit(config)
        except ValidationError as exc:
            return _error(400, str(exc), field=exc.field)
        except RequestError as exc:
            return _error(exc.status, exc.message, field=exc.field)
        if sum(run.active for run in self.runs.values()) >= MAX_RUNNING:
            return _error(429, f"{MAX_RUNNING} simulations are already running")
        run = Run(uuid.uuid4().hex[:12], config, memory)
        self.runs[run.id] = run
        self.tasks.start_soon(run.execute, name=f"simulation {run.id}")
        return JSONResponse(
            {"id": run.id, "status": run.status, "config": asdict(config)},
            status_code=202,
            headers={"Location": f"/simulations/{run.id}"},
        )

    def _admit(self, config: SimConfig) -> int:
        """The simulation's memory estimate, if the budget has room for it.

        422 when it could never fit; 429 while the running ones hold the room.
        """
        estimate = estimate_simulation(config)
        budget = self.memory_budget
        if budget is None:
            return estimate.total
        if estimate.total > budget:
            raise RequestError(
                422,
                f"this simulation needs about {_gib(estimate.total)} of memory "
                f"({estimate.describe()}), more than the {_gib(budget)} this "
                "service has; lower clients x samples_per_client, the model or "
                "the workers",
                field="body",
            )
        held = sum(run.memory for run in self.runs.values() if run.active)
        if held + estimate.total > budget:
            raise RequestError(
                429,
                f"this simulation needs about {_gib(estimate.total)} of memory; "
                f"the running ones hold {_gib(held)} of the service's "
                f"{_gib(budget)}: retry when one has ended",
            )
        return estimate.total

    async def status(self, request: Request) -> Response:
        run = self.lookup(request)
        if run is None:
            return _not_found(request)
        return JSONResponse(run.describe())

    async def delete(self, request: Request) -> Response:
        run = self.lookup(request)
        if run is None:
            return _not_found(request)
        if run.active:
            run.cancel()
            with anyio.move_on_after(CANCEL_WAIT_SECONDS):
                await run.ended.wait()
        elif run.status != "cancelled":
            return _error(409, f"simulation {run.id} already {run.status}")
        return JSONResponse(run.describe())

    async def events(self, request: Request) -> Response:
        run = self.lookup(request)
        if run is None:
            return _not_found(request)
        # A reconnecting EventSource sends the last id it saw: resume after it.
        try:
            start = _resume_after(
                request.headers.get("last-event-id", ""), len(run.log)
            )
        except RequestError as exc:
            return _error(exc.status, exc.message, field=exc.field)
        return StreamingResponse(
            run.sse(start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 past `MAX_BODY_BYTES` (declared or sent)."""
    declared = request.headers.get("content-length", "")
    too_large = RequestError(
        413, f"the body is larger than {MAX_BODY_BYTES} bytes", field="body"
    )
    if declared.isdecimal() and (len(declared) > 12 or int(declared) > MAX_BODY_BYTES):
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _resume_after(last: str, sent: int) -> int:
    """The event ``Last-Event-ID: last`` names (0 without one): the stream
    resumes after it. It must be the id of an event already sent (1 to sent)."""
    try:
        index = last_event_id(last)
    except ValueError:
        raise RequestError(
            400,
            f"Last-Event-ID must be the decimal id of an event of this stream, "
            f"got {_shown(last)}",
            field="Last-Event-ID",
        ) from None
    if index > sent:
        sent_ids = f"ids 1 to {sent}" if sent else "no event yet"
        raise RequestError(
            400,
            f"Last-Event-ID {index} was never sent: this stream has sent {sent_ids}",
            field="Last-Event-ID",
        )
    return index


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _error(status: int, message: str, *, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _not_found(request: Request) -> Response:
    return _error(404, f"no simulation {request.path_params['sim_id']!r}")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 404:
        message = f"no route {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse(
        {"error": message}, status_code=exc.status_code, headers=exc.headers
    )


def create_app(memory_budget: int | None = None) -> Starlette:
    """The app; ``memory_budget`` as in `Service` (None: measured at start)."""
    service = Service(memory_budget)
    app = Starlette(
        exception_handlers={HTTPException: _http_error},
        routes=[
            Route("/health", service.health, methods=["GET"]),
            Route("/simulations", service.create, methods=["POST"]),
            Route("/simulations/{sim_id}", service.status, methods=["GET"]),
            Route("/simulations/{sim_id}", service.delete, methods=["DELETE"]),
            Route("/simulations/{sim_id}/events", service.events, methods=["GET"]),
        ],
        lifespan=service.lifespan,
    )
    app.state.service = service
    return app


app = create_app()


class Server(uvicorn.Server):
    """uvicorn, but Ctrl-C / SIGTERM cancels the simulations right away.

    uvicorn waits for open connections to finish *before* it runs the
    lifespan's shutdown, and an event stream stays open until its simulation
    ends: without this the server would wait for every simulation to train to
    the end. Cancelling first makes each stream end with ``event: done``
    (status ``cancelled``), so the connections close and shutdown proceeds.
    """

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.service.stop_threadsafe()


def make_server(app: Starlette, port: int = PORT, **options: Any) -> Server:
    """A uvicorn server for ``app`` on 127.0.0.1 (``options``: `uvicorn.Config`'s)."""
    # Loopback only: the service starts CPU-heavy work for any caller.
    options.setdefault("timeout_graceful_shutdown", CANCEL_WAIT_SECONDS)
    config = uvicorn.Config(app, host=HOST, port=port, **options)
    return Server(config, app.state.service)


def main() -> None:
    from blazefl.sim import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    configure_logging("console", level="info")
    # uvicorn re-raises the Ctrl-C it shut down for; the shutdown was clean.
    with contextlib.suppress(KeyboardInterrupt):
        make_server(app, args.port).run()


if __name__ == "__main__":
    main()
