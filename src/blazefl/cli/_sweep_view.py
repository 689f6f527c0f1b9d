"""What a sweep shows while it runs: a live view, plain lines, or nothing.

On a terminal, a rich live view: the sweep's bar (runs done of all, how many
running, failed and left, an ETA) above one line per running run (its round
of all, its latest test accuracy). When stdout is not a terminal, one line
per finished run; with ``--quiet``, only the final line.

The ETA counts rounds: the rounds still to run over the rounds per second
this invocation has managed so far (so a resumed sweep's ETA is its own).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RunState", "SweepView", "make_view"]


@dataclass(slots=True)
class RunState:
    """A run as the view sees it."""

    name: str
    status: str  # pending, running, complete, failed, interrupted
    rounds: int
    rounds_done: int
    last_acc: float | None = None


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SweepView:
    """Quiet: the calls a sweep makes, showing only the final lines."""

    def __init__(self, states: Sequence[RunState]) -> None:
        self.states = states
        self._started = time.monotonic()
        self._rounds_at_start = sum(s.rounds_done for s in states)

    def counts(self) -> dict[str, int]:
        found = {"complete": 0, "running": 0, "failed": 0}
        for s in self.states:
            if s.status in found:
                found[s.status] += 1
        found["left"] = len(self.states) - sum(found.values())
        return found

    def eta(self) -> float | None:
        total = sum(s.rounds for s in self.states if s.status != "failed")
        done = sum(
            s.rounds if s.status == "complete" else s.rounds_done
            for s in self.states
            if s.status != "failed"
        )
        progress = done - self._rounds_at_start
        elapsed = time.monotonic() - self._started
        if progress <= 0 or elapsed <= 0:
            return None
        return (total - done) * elapsed / progress

    def line(self) -> str:
        c = self.counts()
        return (
            f"sweep: {c['complete']}/{len(self.states)} done, {c['running']} "
            f"running, {c['left']} left"
            + (f", {c['failed']} failed" if c["failed"] else "")
            + f"; ETA {_eta(self.eta())}"
        )

    def start(self, header: str) -> None:
        """The sweep is about to run its first run."""

    def refresh(self) -> None:
        """Run states changed (called a few times a second)."""

    def finished(self, state: RunState, error: str | None) -> None:
        """A run ended (complete, failed or interrupted)."""

    def note(self, text: str) -> None:
        self.close()
        print(text, file=sys.stderr, flush=True)

    def summary(self, text: str) -> None:
        self.close()
        print(text, flush=True)

    def close(self) -> None:
        """Stop any live output; safe to call more than once."""


class PlainView(SweepView):
    """One line per finished run."""

    def start(self, header: str) -> None:
        print(header, flush=True)

    def finished(self, state: RunState, error: str | None) -> None:
        acc = f", test acc {state.last_acc:.3f}" if state.last_acc is not None else ""
        why = f": {error}" if error else ""
        print(f"{state.status} {state.name}{acc}{why} | {self.line()}", flush=True)


class RichView(PlainView):
    """The sweep's bar above one line per running run (a terminal)."""

    def __init__(self, states: Sequence[RunState]) -> None:
        super().__init__(states)
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._live: Any = Live(
            console=self._console, refresh_per_second=4, transient=True
        )
        self._on = False

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        c = self.counts()
        done = c["complete"] + c["failed"]
        grid.add_row(
            "sweep",
            ProgressBar(total=len(self.states), completed=done, width=30),
            self.line().removeprefix("sweep: "),
        )
        for s in self.states:
            if s.status == "running":
                acc = f"test acc {s.last_acc:.3f}" if s.last_acc is not None else ""
                grid.add_row(
                    f"  {s.name}",
                    ProgressBar(total=s.rounds, completed=s.rounds_done, width=30),
                    f"round {s.rounds_done}/{s.rounds} {acc}",
                )
        return grid

    def start(self, header: str) -> None:
        self._console.print(header, highlight=False, markup=False)
        self._live.update(self._render())
        self._live.start()
        self._on = True

    def refresh(self) -> None:
        if self._on:
            self._live.update(self._render())

    def finished(self, state: RunState, error: str | None) -> None:
        acc = f", test acc {state.last_acc:.3f}" if state.last_acc is not None else ""
        why = f": {error}" if error else ""
        self._console.print(
            f"{state.status} {state.name}{acc}{why}", highlight=False, markup=False
        )
        self.refresh()

    def close(self) -> None:
        if self._on:
            self._on = False
            self._live.stop()


def make_view(states: Sequence[RunState], *, quiet: bool) -> SweepView:
    """The view for this terminal: rich, plain lines, or quiet."""
    if quiet:
        return SweepView(states)
    if sys.stdout.isatty():
        try:
            return RichView(states)
        except ImportError:
            pass
    return PlainView(states)
