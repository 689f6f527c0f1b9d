"""Tests for examples/async-service: the FedAvg simulation service.

The app runs in uvicorn on 127.0.0.1 (a port the OS picks) inside the test's
event loop: httpx's ASGITransport buffers whole responses, so it cannot show
a server-sent event stream as it arrives, and it runs no lifespan.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio

APP_PATH = Path(__file__).resolve().parents[2] / "examples" / "async-service" / "app.py"

# A small, fast run: 3 of 6 clients a round, the MLP.
SMALL = {"clients": 6, "rounds": 3, "sample_ratio": 0.5, "model": "mlp", "seed": 1}
# Rounds long enough (about a second here) to do things while one trains. As
# many workers as clients: every client starts with the round, so a cancel
# after the first client_finished never meets a client being handed to a
# thread (blazefl's ThreadExecutor then waits out its 5 s stop grace).
SLOW = {
    "clients": 2,
    "rounds": 50,
    "sample_ratio": 1.0,
    "epochs": 8,
    "samples_per_client": 256,
    "workers": 2,
}


def _load_app_module() -> ModuleType:
    name = "blazefl_example_async_service"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


svc = _load_app_module()


@dataclass
class Served:
    client: httpx.AsyncClient
    server: Any
    app: Any


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(svc.create_app()) as running:
        yield running


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[Served]:
    """``app`` in uvicorn on a free port, with a client; stopped on exit."""
    server = svc.make_server(app, 0, log_config=None, access_log=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(10):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False
        ) as client:
            yield Served(client, server, app)
    finally:
        # What Ctrl-C does (Server.handle_exit), without raising the signal.
        server.should_exit = True
        app.state.service.stop_threadsafe()
        with anyio.fail_after(20):
            await task
        sock.close()
    # The lifespan's task group waited for every simulation to close.
    assert all(not run.active for run in app.state.service.runs.values())


async def sse(
    client: httpx.AsyncClient, sim_id: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, decoded data) for each frame of a simulation's stream."""
    async with client.stream(
        "GET", f"/simulations/{sim_id}/events", headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = "message", ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and data:
                decoded = json.loads(data)
                # data: is the event's events.jsonl object: it names itself
                assert decoded.pop("event") == name
                yield name, decoded
                name, data = "message", ""


async def read_all(client: httpx.AsyncClient, sim_id: str) -> list[tuple[str, Any]]:
    with anyio.fail_after(60):
        return [event async for event in sse(client, sim_id)]


async def start(client: httpx.AsyncClient, config: dict[str, Any]) -> str:
    response = await client.post("/simulations", json=config)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "running"
    return str(body["id"])


@pytest.mark.asyncio
async def test_stream_has_every_round_then_done(served: Served) -> None:
    client = served.client
    sim_id = await start(client, SMALL)
    events = await read_all(client, sim_id)

    names = [name for name, _ in events]
    assert names[-1] == "done"
    assert names.count("done") == 1
    assert names.count("round_started") == 3
    assert names.count("client_finished") == 3 * 3
    finished = [data for name, data in events if name == "round_finished"]
    assert [data["round"] for data in finished] == [0, 1, 2]
    for data in finished:
        assert 0.0 <= data["summary"]["server_acc"] <= 1.0
        assert data["clients"] == 3
        assert data["failed"] == 0
        assert data["executor"] == "threads"
    started = [data for name, data in events if name == "round_started"]
    assert all(isinstance(data["cids"], list) for data in started)

    done = events[-1][1]
    assert done["status"] == "finished"
    assert done["rounds_done"] == 3
    assert done["last_accuracy"] == finished[-1]["summary"]["server_acc"]

    status = (await client.get(f"/simulations/{sim_id}")).json()
    assert status["status"] == "finished"
    assert status["rounds_done"] == 3
    assert status["last_accuracy"] == finished[-1]["summary"]["server_acc"]

    # A late subscriber gets the whole history replayed, then the end.
    assert await read_all(client, sim_id) == events
    # One resuming after event id 4 (Last-Event-ID; ids count from 1, one per
    # event, as the dashboard's) gets the rest.
    with anyio.fail_after(30):
        rest = [e async for e in sse(client, sim_id, {"Last-Event-ID": "4"})]
    assert rest == events[4:]


@pytest.mark.asyncio
async def test_health_answers_while_a_round_trains(served: Served) -> None:
    client = served.client
    sim_id = await start(client, SLOW)
    seen: list[str] = []
    with anyio.fail_after(60):
        async with aclosing(sse(client, sim_id)) as stream:
            async for name, data in stream:
                seen.append(name)
                if name != "round_started" or data["round"] != 0:
                    continue
                for _ in range(5):
                    health = await client.get("/health")
                    assert health.status_code == 200
                    assert health.json() == {"status": "ok", "running": 1}
                # Only now look: if round 0 is still unfinished, every /health
                # above was answered while its clients were training.
                status = (await client.get(f"/simulations/{sim_id}")).json()
                assert status["status"] == "running"
                assert status["rounds_done"] == 0
                break
    assert "round_finished" not in seen
    assert (await client.delete(f"/simulations/{sim_id}")).status_code == 200


@pytest.mark.asyncio
async def test_delete_cancels_a_running_simulation(served: Served) -> None:
    client = served.client
    # One worker: when the first client finishes, the second has just begun
    # (on two workers the two finish within milliseconds of each other, and
    # the DELETE could land between rounds).
    sim_id = await start(client, {**SLOW, "workers": 1})
    async with anyio.create_task_group() as tg:
        events: list[tuple[str, Any]] = []
        training = anyio.Event()

        async def listen() -> None:
            with anyio.fail_after(60):
                async for event in sse(client, sim_id):
                    events.append(event)
                    if event[0] == "client_finished":
                        training.set()

        tg.start_soon(listen)
        with anyio.fail_after(30):
            await training.wait()
        # Mid-round: the first client is done, the second is training.
        t0 = time.perf_counter()
        deleted = await client.delete(f"/simulations/{sim_id}")
        # DELETE returns once the simulation has stopped, and that is prompt:
        # a cancelled client stops at its next batch.
        assert time.perf_counter() - t0 < 4.0
        assert deleted.status_code == 200
        assert deleted.json()["status"] == "cancelled"
    # The stream ended by itself: the aborted round, then done.
    assert events[-2][0] == "round_aborted"
    assert events[-2][1]["reason"] == "cancelled"
    assert events[-1] == (
        "done",
        {
            "status": "cancelled",
            "rounds_done": deleted.json()["rounds_done"],
            "last_accuracy": deleted.json()["last_accuracy"],
            "error": None,
        },
    )
    status = (await client.get(f"/simulations/{sim_id}")).json()
    assert status["status"] == "cancelled"
    assert status["rounds_done"] < SLOW["rounds"]
    # Deleting again is harmless; a finished simulation cannot be cancelled.
    again = await client.delete(f"/simulations/{sim_id}")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert (await client.get("/health")).json()["running"] == 0

    other = await start(client, {**SMALL, "rounds": 1})
    await read_all(client, other)
    conflict = await client.delete(f"/simulations/{other}")
    assert conflict.status_code == 409
    assert "finished" in conflict.json()["error"]


class _BrokenWork(svc.FedAvgClientWork):  # type: ignore[misc]
    def __call__(self, ctx: Any, payload: Any) -> Any:
        raise RuntimeError("disk on fire")


@pytest.mark.asyncio
async def test_a_failing_round_marks_the_simulation_failed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(svc, "FedAvgClientWork", _BrokenWork)
    client = served.client
    sim_id = await start(client, SMALL)
    events = await read_all(client, sim_id)
    names = [name for name, _ in events]
    assert names == ["round_started", *["client_failed"] * 3, "round_aborted", "done"]
    assert all("disk on fire" in d["error"] for n, d in events if n == "client_failed")
    assert all("traceback" not in d for _, d in events)
    done = events[-1][1]
    assert done["status"] == "failed"
    assert done["error"].startswith("RoundFailedError: round 0: 3 of 3 clients failed")
    status = (await client.get(f"/simulations/{sim_id}")).json()
    assert status["status"] == "failed"
    assert status["error"] == done["error"]
    assert status["rounds_done"] == 0


BAD_BODIES = [
    ({"clients": 0}, "clients", "[1, 1000]"),
    ({"clients": "6"}, "clients", "[1, 1000]"),
    ({"rounds": 1001}, "rounds", "[1, 1000]"),
    ({"rounds": 2.5}, "rounds", "[1, 1000]"),
    ({"sample_ratio": 0}, "sample_ratio", "(0.0, 1.0]"),
    ({"sample_ratio": 1.5}, "sample_ratio", "(0.0, 1.0]"),
    ({"epochs": True}, "epochs", "[1, 50]"),
    ({"batch_size": -1}, "batch_size", "[1, 4096]"),
    ({"lr": -0.1}, "lr", "(0.0, 10.0]"),
    ({"seed": -1}, "seed", "[0, 4294967295]"),
    ({"executor": "processes"}, "executor", "threads, inline"),
    ({"workers": 0}, "workers", "[1, 64]"),
    ({"model": "resnet"}, "model", "cnn, mlp"),
    ({"clients": 3, "sample_ratio": 0.2}, "sample_ratio", ">= 0.333333"),
    ({"clientz": 3}, "clientz", "allowed fields are clients, rounds"),
    ([1, 2], "body", "JSON object"),
]


@pytest.mark.asyncio
async def test_bad_input_is_a_400_naming_the_field(served: Served) -> None:
    client = served.client
    for body, field, allowed in BAD_BODIES:
        response = await client.post("/simulations", json=body)
        assert response.status_code == 400, body
        error = response.json()
        assert error["field"] == field, body
        assert field in error["error"], body
        assert allowed in error["error"], (body, error)
    response = await client.post(
        "/simulations",
        content=b'{"clients": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert "not valid JSON" in response.json()["error"]
    # Nothing was started.
    assert (await client.get("/health")).json()["running"] == 0
    assert served.app.state.service.runs == {}


@pytest.mark.asyncio
async def test_unknown_id_is_404(served: Served) -> None:
    client = served.client
    for method, path in [
        ("GET", "/simulations/nope"),
        ("GET", "/simulations/nope/events"),
        ("DELETE", "/simulations/nope"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert "nope" in response.json()["error"]


@pytest.mark.asyncio
async def test_ctrl_c_cancels_running_simulations(tmp_path: Path) -> None:
    """`python app.py`: SIGINT ends open streams with done/cancelled, exits 0."""
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = await anyio.open_process(
            [sys.executable, str(APP_PATH), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=APP_PATH.parent,
        )
        async with proc:
            try:
                port = None
                with anyio.fail_after(60):
                    while port is None:
                        assert proc.returncode is None, log.read_text()
                        await anyio.sleep(0.05)
                        found = re.search(
                            r"running on http://127\.0\.0\.1:(\d+)", log.read_text()
                        )
                        port = int(found.group(1)) if found else None
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False
                ) as client:
                    sim_id = await start(client, SLOW)
                    events = []
                    with anyio.fail_after(60):
                        async for event in sse(client, sim_id):
                            events.append(event)
                            if event[0] == "client_finished" and len(events) == 2:
                                proc.send_signal(signal.SIGINT)
                assert events[-1][0] == "done"
                assert events[-1][1]["status"] == "cancelled"
                with anyio.fail_after(30):
                    assert await proc.wait() == 0, log.read_text()
                assert "Application shutdown complete" in log.read_text()
            finally:
                if proc.returncode is None:
                    proc.kill()


# -- malformed requests: a 4xx with a JSON error, never a 500 ------------------

_DEEP = b"[" * 5000 + b"]" * 5000
MALFORMED_BODIES = [
    (_DEEP, 400, "nests JSON more than 32 levels deep"),
    (b'{"clients": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "more than 32 levels"),
    (b'{"clients": ' + b"9" * 5000 + b"}", 400, "is not valid JSON"),
    (b'{"model": "caf\xe9"}', 400, "is not UTF-8 (byte 0xe9 at offset 14)"),
    (b'{"model": "' + b"x" * 20_000 + b'"}', 413, "larger than 16384 bytes"),
    (b'{"clients": "' + b"x" * 10_000 + b'"}', 400, "got 'xxxxxxxx"),
]


def _assert_json_error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert text in error, error
    assert len(error) < 400  # never the body echoed back


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "status", "text"), MALFORMED_BODIES)
async def test_a_malformed_body_is_a_4xx_json_error(
    served: Served, body: bytes, status: int, text: str
) -> None:
    """Deep nesting, huge numbers, bytes that are not UTF-8, an oversized body:
    a 4xx naming the problem, and nothing started."""
    response = await served.client.post(
        "/simulations", content=body, headers={"content-type": "application/json"}
    )
    _assert_json_error(response, status, text)
    assert served.app.state.service.runs == {}


@pytest.mark.asyncio
async def test_an_oversized_chunked_body_is_refused_while_read(served: Served) -> None:
    """Without a Content-Length the body is counted as it arrives: 413."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}'

    response = await served.client.post("/simulations", content=chunks())
    _assert_json_error(response, 413, "larger than 16384 bytes")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("last", "text"),
    [
        ("abc", "must be the decimal id of an event of this stream, got 'abc'"),
        # "²" as Latin-1: str.isdigit() is true, int() refuses it
        (b"\xb2", "must be the decimal id of an event of this stream, got '²'"),
        ("-1", "got '-1'"),
        ("9" * 5000, "got '99999"),
        ("1.5", "got '1.5'"),
        ("1000", "Last-Event-ID 1000 was never sent: this stream has sent ids 1 to"),
    ],
)
async def test_a_malformed_last_event_id_is_a_400(
    served: Served, last: str | bytes, text: str
) -> None:
    """Last-Event-ID must be an id the stream sent; anything else is a 400."""
    client = served.client
    sim_id = await start(client, {**SMALL, "rounds": 1})
    await read_all(client, sim_id)
    response = await client.get(
        f"/simulations/{sim_id}/events",
        headers={"Last-Event-ID": last},
    )
    _assert_json_error(response, 400, text)
    assert response.json()["field"] == "Last-Event-ID"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/nope", 404, "no route /nope"),
        ("PUT", "/simulations", 405, "PUT is not allowed on /simulations"),
        ("POST", "/health", 405, "POST is not allowed on /health"),
    ],
)
async def test_unknown_routes_and_methods_answer_json(
    served: Served, method: str, path: str, status: int, text: str
) -> None:
    """Starlette's own 404 and 405 come as JSON errors too."""
    response = await served.client.request(method, path)
    _assert_json_error(response, status, text)


# -- memory: the product of the fields is bounded --------------------------------


def test_the_estimate_bounds_the_product_of_fields() -> None:
    """Each field within its range, the product is what counts: 1000 clients
    of 10,000 samples is about 6 GiB of data, 1000 of 10 a few MiB."""
    big = svc.estimate_simulation(
        svc.parse_config({"clients": 1000, "samples_per_client": 10_000})
    )
    small = svc.estimate_simulation(
        svc.parse_config({"clients": 1000, "samples_per_client": 10})
    )
    assert big.data > 5.5 * 2**30
    assert small.data < 16 * 2**20


@pytest.mark.asyncio
async def test_a_simulation_that_cannot_fit_is_refused() -> None:
    """Over the budget alone: 422 naming the estimate and the budget."""
    async with serving(svc.create_app(memory_budget=2**30)) as served:
        response = await served.client.post(
            "/simulations", json={"clients": 1000, "samples_per_client": 10_000}
        )
        _assert_json_error(response, 422, "this simulation needs about 6.")
        assert "more than the 1.00 GiB this service has" in response.json()["error"]
        assert served.app.state.service.runs == {}


@pytest.mark.asyncio
async def test_running_simulations_hold_their_estimate() -> None:
    """A budget for one SLOW simulation: a second waits (429) until the first
    is cancelled, then starts."""
    one = svc.estimate_simulation(svc.parse_config(SLOW)).total
    async with serving(svc.create_app(memory_budget=one + one // 2)) as served:
        client = served.client
        first = await start(client, SLOW)
        response = await client.post("/simulations", json=SLOW)
        _assert_json_error(response, 429, "retry when one has ended")
        assert (await client.delete(f"/simulations/{first}")).status_code == 200
        second = await start(client, SLOW)
        assert (await client.delete(f"/simulations/{second}")).status_code == 200
