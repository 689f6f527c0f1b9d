"""The dashboard served for real (uvicorn on 127.0.0.1) over run folders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from blazefl.dashboard import DashboardServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio


def _run_folder(root: Path, name: str, rounds: int = 3) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('algorithm = "fedavg"\nrounds = 3\n')
    lines = []
    for r in range(rounds):
        lines.append({"event": "round_started", "round": r, "cids": [0, 1]})
        lines.append({"event": "client_finished", "round": r, "cid": 0, "seconds": 0.1})
        lines.append(
            {
                "event": "client_failed",
                "round": r,
                "cid": 1,
                "seconds": 0.2,
                "kind": "error",
                "error": "boom",
                "traceback": "",
            }
        )
        lines.append(
            {
                "event": "round_finished",
                "round": r,
                "seconds": 0.3,
                "clients": 2,
                "failed": 1,
                "metrics": {"loss": 1.0 / (r + 1)},
                "summary": {"server_acc": 0.1 * r, "epsilon": 0.5 * r},
            }
        )
    (folder / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


@asynccontextmanager
async def _served(
    roots: list[Path], **kw: Any
) -> AsyncIterator[tuple[DashboardServer, httpx.AsyncClient]]:
    async with (
        DashboardServer(roots, **kw) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        yield server, client


def _frames(text: str) -> list[tuple[int, str, dict[str, object]]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line
        )
        if "id" in fields:
            out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return out


async def _stream(
    client: httpx.AsyncClient, url: str, count: int, **kw: object
) -> list:  # type: ignore[type-arg]
    text = ""
    async with client.stream("GET", url, **kw) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_text():
            text += chunk
            if len(_frames(text)) >= count:
                break
    return _frames(text)


async def test_events_are_the_lines_of_events_jsonl_with_ids(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path, "run")
    lines = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    async with DashboardServer([folder], announce=lambda line: None) as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            runs = (await client.get("/api/runs")).json()
            assert [r["name"] for r in runs] == ["run"]
            assert runs[0]["config"] == {"algorithm": "fedavg", "rounds": 3}
            frames = await _stream(client, "/events?run=run", len(lines))
            assert [f[0] for f in frames] == list(range(1, len(lines) + 1))
            assert [f[2] for f in frames] == lines
            assert [f[1] for f in frames] == [x["event"] for x in lines]
            # A reconnect with Last-Event-ID resumes after it.
            again = await _stream(
                client, "/events?run=run", 2, headers={"Last-Event-ID": "10"}
            )
            assert [f[0] for f in again] == [11, 12]


async def test_new_lines_reach_open_streams(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path, "run", rounds=1)
    async with (
        _served([folder], announce=lambda line: None) as (_server, client),
        client.stream("GET", "/events?run=run") as response,
    ):
        text = ""
        chunks = response.aiter_text()
        while len(_frames(text)) < 4:
            text += await chunks.__anext__()
        with (folder / "events.jsonl").open("a") as f:
            f.write(json.dumps({"event": "round_started", "round": 1}) + "\n")
            f.write('{"event": "round_fin')  # a line still being written
        while len(_frames(text)) < 5:
            text += await chunks.__anext__()
        assert _frames(text)[4] == (
            5,
            "round_started",
            {"event": "round_started", "round": 1},
        )


async def test_a_sweep_folder_lists_its_runs(tmp_path: Path) -> None:
    _run_folder(tmp_path / "sweep" / "runs", "000-seed0")
    _run_folder(tmp_path / "sweep" / "runs", "001-seed1")
    async with (
        DashboardServer([tmp_path / "sweep"], announce=lambda line: None) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        names = [r["name"] for r in (await client.get("/api/runs")).json()]
    assert names == ["sweep/runs/000-seed0", "sweep/runs/001-seed1"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/..%2f_app.py",
        "/static/static/index.html",
        "/static//etc/passwd",
        "/static/dashboard.js/../../_sse.py",
        "/nothing-here",
    ],
)
async def test_only_its_own_assets_are_served(tmp_path: Path, path: str) -> None:
    folder = _run_folder(tmp_path, "run", rounds=1)
    async with _served([folder], announce=lambda line: None) as (_server, client):
        ok = await client.get("/static/dashboard.js")
        assert ok.status_code == 200
        response = await client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


async def test_malformed_requests_get_a_json_4xx(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path, "run", rounds=1)
    async with _served([folder], announce=lambda line: None) as (_server, client):
        page = await client.get("/")
        assert page.status_code == 200
        assert "uPlot.iife.min.js" in page.text
        cases = [
            ("/events", {}, 400),
            ("/events?run=nope", {}, 404),
            ("/events?run=run", {"Last-Event-ID": "x1"}, 400),
            ("/events?run=run", {"Last-Event-ID": "-3"}, 400),
            ("/events?run=" + "a" * 600, {}, 400),
        ]
        for url, headers, status in cases:
            response = await client.get(url, headers=headers)
            assert response.status_code == status, url
            assert "error" in response.json()
        assert (await client.post("/api/runs")).status_code == 405


async def test_a_non_loopback_host_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _run_folder(tmp_path, "run", rounds=1)
    lines: list[str] = []
    async with DashboardServer([folder], host="0.0.0.0", announce=lines.append):
        pass
    assert lines[0].startswith("dashboard: http://0.0.0.0:")
    assert "no authentication" in capsys.readouterr().err
