"""``blazefl serve``: the dashboard over run folders until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import click

from blazefl._exceptions import MissingDependencyError

__all__ = ["serve_folders"]


def serve_folders(folders: list[Path], host: str, port: int) -> int:
    """Serve until a signal; 0 then, 2 if the port cannot be bound."""
    try:
        from blazefl.dashboard import DashboardServer, find_runs
    except ImportError as exc:
        raise MissingDependencyError(
            "blazefl serve", "dashboard", exc.name or "starlette"
        ) from None
    if not find_runs(folders):
        click.echo(
            "note: no run folders yet under "
            + ", ".join(map(str, folders))
            + "; they appear when they start",
            err=True,
        )

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with DashboardServer(folders, host=host, port=port):
                async for _ in signals:
                    return

    try:
        anyio.run(main)
    except OSError as exc:
        raise click.UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", ctx=None
        ) from None
    return 0
