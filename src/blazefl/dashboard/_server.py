"""Serve the dashboard from inside a running event loop, for as long as a block runs.

`DashboardServer` binds its socket first (port 0 picks a free one, so the URL
is known before anything is served), then runs uvicorn on that socket as a
task beside whatever else the loop does: ``blazefl run --dashboard`` trains
in the same loop, ``blazefl serve`` just waits. Uvicorn's own signal handling
is left out, so Ctrl-C keeps meaning what the caller says it means; on exit
the server stops accepting, gives open event streams a second to end, and
closes its socket. It binds 127.0.0.1 unless told otherwise, and says loudly
that it has no authentication when it is.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType

import anyio
import anyio.abc
import uvicorn

from blazefl.dashboard._app import make_app

__all__ = ["LOOPBACK", "DashboardServer"]

LOOPBACK = "127.0.0.1"


class _QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.changed = anyio.Event()  # set once serving, or once it gave up

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the caller's signal handling stays in charge

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.changed.set()


class DashboardServer:
    """The dashboard over `roots`, served on `host`:`port` while the block runs.

    `announce` gets the line ``dashboard: http://HOST:PORT/`` once it serves
    (default: printed).
    """

    def __init__(
        self,
        roots: list[Path],
        *,
        host: str = LOOPBACK,
        port: int = 0,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an integer in [0, 65536), got {port!r}")
        self.roots = roots
        self.host = host
        self.port = port
        self._announce = announce or (lambda line: print(line, flush=True))
        self._group: anyio.abc.TaskGroup | None = None
        self._server: _QuietServer | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def __aenter__(self) -> DashboardServer:
        self._socket = self._bind()
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            make_app(self.roots),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = _QuietServer(config)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        server, sock = self._server, self._socket

        async def serve() -> None:
            try:
                await server.serve([sock])
            finally:
                server.changed.set()

        self._group.start_soon(serve)
        await server.changed.wait()
        if not server.started:
            await self._group.__aexit__(None, None, None)
            sock.close()
            raise RuntimeError(f"the dashboard could not start on {self.url}")
        if self.host != LOOPBACK and self.host != "localhost":
            print(
                f"warning: the dashboard listens on {self.host}, beyond this "
                "machine, and has no authentication: anyone who can reach "
                "the port sees the runs",
                file=sys.stderr,
            )
        self._announce(f"dashboard: {self.url}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._group is not None
        self._server.should_exit = True  # uvicorn ends within its 1 s grace
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        finally:
            if self._socket is not None:
                self._socket.close()
