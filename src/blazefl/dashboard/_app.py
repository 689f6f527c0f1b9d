"""The dashboard's HTTP side: one page, its own assets, the runs, their events.

Routes (all read-only):

- ``GET /``                   the page (``static/index.html``)
- ``GET /static/{name}``      one of the page's own files; anything else 404
- ``GET /api/runs``           the runs: name, status, config
- ``GET /events?run=NAME``    that run's events as SSE, replayed from the
  start (or after ``Last-Event-ID``), then live; ``event: <name>``,
  ``data:`` the same JSON object as the line in ``events.jsonl``, ``id:``
  the line's number

Every malformed request gets a 4xx with a JSON body ``{"error": ...}``.
Runs are re-discovered on each ``/api/runs``, so a sweep's new runs appear
while it goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from blazefl.dashboard._runs import RunFeed, find_runs
from blazefl.dashboard._sse import HEARTBEAT, BadLastEventIDError, last_event_id

__all__ = ["make_app"]

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot-LICENSE.txt": "text/plain; charset=utf-8",
}
_HEARTBEAT_SECONDS = 10.0
_MAX_RUN_NAME = 512


def _asset(name: str) -> bytes:
    return (resources.files("blazefl.dashboard") / "static" / name).read_bytes()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _Runs:
    """The run folders under the roots, each tailed once while anyone watches."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self.feeds: dict[str, RunFeed] = {}
        self.group: anyio.abc.TaskGroup | None = None

    def refresh(self) -> dict[str, RunFeed]:
        for name, folder in find_runs(self.roots).items():
            if name not in self.feeds:
                feed = RunFeed(name, folder)
                feed.poll()
                self.feeds[name] = feed
                if self.group is not None:
                    self.group.start_soon(feed.tail)
        return self.feeds


def make_app(roots: list[Path]) -> Starlette:
    """The dashboard over the run folders (or folders of runs) in `roots`."""
    runs = _Runs([Path(r) for r in roots])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            runs.group = group
            for feed in runs.refresh().values():
                group.start_soon(feed.tail)
            yield
            group.cancel_scope.cancel()

    async def page(request: Request) -> Response:
        return Response(_asset("index.html"), media_type=_STATIC["index.html"])

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:  # only the page's own files: no paths at all
            return _error(404, "no such file")
        return Response(_asset(name), media_type=_STATIC[name])

    async def api_runs(request: Request) -> Response:
        feeds = runs.refresh()
        return JSONResponse(
            [
                {"name": n, "status": f.status(), "config": f.config()}
                for n, f in feeds.items()
            ]
        )

    async def events(request: Request) -> Response:
        name = request.query_params.get("run")
        if name is None or len(name) > _MAX_RUN_NAME:
            return _error(400, "pass the run as ?run=NAME (see /api/runs)")
        feed = runs.refresh().get(name)
        if feed is None:
            return _error(404, f"no run named {name[:80]!r} (see /api/runs)")
        try:
            after = last_event_id(request.headers.get("last-event-id"))
        except BadLastEventIDError as exc:
            return _error(400, str(exc))
        log = feed.log

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            async with aclosing(log.follow(after, idle=_HEARTBEAT_SECONDS)) as items:
                async for item in items:
                    yield HEARTBEAT if item is None else log.frame(item[0])

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def http_error(request: Request, exc: Any) -> Response:
        if isinstance(exc, HTTPException):
            return _error(exc.status_code, str(exc.detail))
        return _error(500, "internal error")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name:path}", static),
            Route("/api/runs", api_runs),
            Route("/events", events),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
