"""A live round table for Jupyter and IPython, fed by a simulation's events.

In a notebook the event loop is already running, so drive a `Simulation` with
top-level ``await`` rather than ``run_sync``::

    async with sim, live_progress(sim):
        results = await sim.run(5)

`live_progress` subscribes to the simulation's event stream and keeps one
table up to date as rounds finish: round, clients (and failures), the
clients' mean training loss, the handler's test loss and accuracy, and the
round's seconds. In Jupyter (or any IPython front end that renders HTML) the
table is one output that is redrawn in place through IPython's own display
machinery; without IPython it prints one line per round instead, so the same
code works in a script. It only reads events: results are the same with and
without it.

Work defined in a notebook cell cannot be imported by spawned process
workers; use `blazefl.sim.ThreadExecutor` (or the inline executor) there, or
move the work into a module.
"""

from __future__ import annotations

import html
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from blazefl.sim import RoundAborted, RoundFinished, Simulation

__all__ = ["live_progress"]

_COLUMNS = ("round", "clients", "failed", "train loss", "test loss", "test acc", "s")


def _row(event: RoundFinished) -> tuple[str, ...]:
    def number(mapping: Any, key: str, digits: int) -> str:
        value = mapping.get(key)
        return "" if value is None else f"{float(value):.{digits}f}"

    return (
        str(event.round + 1),
        str(event.clients),
        str(event.failed),
        number(event.metrics, "loss", 4),
        number(event.summary, "server_loss", 4),
        number(event.summary, "server_acc", 3),
        f"{event.seconds:.2f}",
    )


def _html(rows: list[tuple[str, ...]], status: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>{html.escape(status)}</p>"
    )


def _text(rows: list[tuple[str, ...]], status: str) -> str:
    lines = [" | ".join(_COLUMNS)]
    lines += [" | ".join(row) for row in rows]
    return "\n".join([*lines, status])


class _Table:
    """One table drawn with IPython's display (updated in place), or printed."""

    def __init__(self, out: Callable[[str], None] | None) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.status = "waiting for the first round"
        self._print = out
        self._handle: Any = None
        if out is None and "IPython" in sys.modules:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self._handle = display(  # type: ignore[no-untyped-call]
                    self._bundle(), raw=True, display_id=True
                )
        if self._handle is None and self._print is None:
            self._print = print

    def _bundle(self) -> dict[str, str]:
        return {
            "text/html": _html(self.rows, self.status),
            "text/plain": _text(self.rows, self.status),
        }

    def add(self, row: tuple[str, ...] | None, status: str) -> None:
        if row is not None:
            self.rows.append(row)
        self.status = status
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)
        elif self._print is not None and row is not None:
            self._print(
                " | ".join(f"{c} {v}" for c, v in zip(_COLUMNS, row, strict=True))
            )
        elif self._print is not None:
            self._print(status)


@asynccontextmanager
async def live_progress(
    sim: Simulation[Any, Any], *, out: Callable[[str], None] | None = None
) -> AsyncIterator[list[tuple[str, ...]]]:
    """Show `sim`'s rounds as they finish, for as long as the block runs.

    Yields the table's rows (one tuple of strings per finished round, in
    `_COLUMNS` order) so a notebook can also inspect them. `out`, if given,
    receives one text line per round instead of the IPython display (for
    logs or tests).
    """
    table = _Table(out)
    events = sim.events()

    def show(event: Any) -> None:
        if isinstance(event, RoundFinished):
            table.add(_row(event), f"round {event.round + 1} finished")
        elif isinstance(event, RoundAborted):
            table.add(None, f"round {event.round + 1} aborted: {event.reason}")

    async def follow() -> None:
        async for event in events:
            show(event)

    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(follow)
            try:
                yield table.rows
            except BaseException as exc:  # raised again below, outside the group
                error = exc
            group.cancel_scope.cancel()
        # Events the simulation published before the block ended.
        while (event := events.receive_nowait()) is not None:
            show(event)
    finally:
        await events.aclose()
    if error is not None:
        raise error
