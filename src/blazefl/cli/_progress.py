"""What a run shows while it trains: a live display, plain lines, or nothing.

`make_display` picks one: on a terminal, rich progress bars (clients done of
sampled, with an ETA, and rounds done of all, with an ETA) under a growing
table of finished rounds; when stdout is not a terminal (a log file, CI), one
plain line per round; with ``--quiet``, nothing but the final summary line.
All three are fed the same calls by the run, from `sim.events()`.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Display", "PlainDisplay", "QuietDisplay", "make_display"]

_HEADER = (
    f"{'round':>7}  {'train loss':>10}  {'test loss':>9}  {'test acc':>8}  {'time':>7}"
)


def _number(value: object, spec: str, width: int) -> str:
    return f"{value:{width}{spec}}" if isinstance(value, float) else f"{'-':>{width}}"


def _attack(row: dict[str, Any], separator: str) -> str:
    """An attacked run's success rate, labelled (rows of other runs lack it)."""
    if "attack_success_rate" not in row:
        return ""
    return f"{separator}attack success {_number(row['attack_success_rate'], '.3f', 0)}"


def _clients(row: dict[str, Any], separator: str) -> str:
    """With --evaluate-clients: the clients' mean and p10 accuracy (own
    models), on evaluated rounds."""
    if row.get("client_acc_mean") is None:
        return ""
    return (
        f"{separator}clients acc {_number(row['client_acc_mean'], '.3f', 0)} "
        f"(p10 {_number(row['client_acc_p10'], '.3f', 0)})"
    )


def format_row(row: dict[str, Any], total: int) -> str:
    """A finished round as one aligned table row."""
    failed = f"  ({row['failed']} failed)" if row.get("failed") else ""
    return (
        f"{row['round']:>3}/{total:<3}  {_number(row['train_loss'], '.4f', 10)}  "
        f"{_number(row['test_loss'], '.4f', 9)}  "
        f"{_number(row['test_acc'], '.3f', 8)}  {row['seconds']:>6.2f}s"
        f"{_attack(row, '  ')}{_clients(row, '  ')}{failed}{_timed(row)}"
        + (f"  epsilon {row['epsilon']:.3f}" if "epsilon" in row else "")
    )


def _timed(row: dict[str, Any]) -> str:
    """With --profiles: virtual time, stragglers, in-flight clients, staleness."""
    if row.get("virtual_time") is None:
        return ""
    text = f"  virtual {row['virtual_time']:.1f}s"
    if row.get("stragglers"):
        text += f", {row['stragglers']} stragglers"
    if row.get("in_flight"):
        text += (
            f", {row['in_flight']} in flight, staleness "
            f"{row['staleness_mean']:.1f} (max {row['staleness_max']})"
        )
    return text


class Display:
    """The calls a run makes; this base shows only the summary and notes."""

    def __init__(self, total_rounds: int, err: TextIO | None = None) -> None:
        self.total = total_rounds
        self.err = err or sys.stderr

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def header(self, text: str, first_round: int) -> None:
        """The run is about to start (or resume after `first_round` rounds)."""

    def round_started(self, number: int, clients: int) -> None:
        """Round `number` (from 1) sampled `clients` clients."""

    def client_done(self) -> None:
        """One client of the running round finished or failed."""

    def round_finished(self, row: dict[str, Any]) -> None:
        """A round was committed; `row` is its metrics.jsonl line."""

    def note(self, text: str) -> None:
        """A message for the person at the terminal (stderr)."""
        self.close()
        print(text, file=self.err, flush=True)

    def summary(self, text: str) -> None:
        """The final line of the run (stdout, in every mode)."""
        self.close()
        print(text, flush=True)

    def close(self) -> None:
        """Stop any live output; safe to call more than once."""


class QuietDisplay(Display):
    """``--quiet``: the summary line and errors only."""


class PlainDisplay(Display):
    """One line per round, for logs and pipes."""

    def header(self, text: str, first_round: int) -> None:
        print(text, flush=True)

    def round_finished(self, row: dict[str, Any]) -> None:
        print(
            f"round {row['round']}/{self.total} | train loss "
            f"{_number(row['train_loss'], '.4f', 0)} | test loss "
            f"{_number(row['test_loss'], '.4f', 0)} | test acc "
            f"{_number(row['test_acc'], '.3f', 0)} | {row['seconds']:.2f}s"
            + _attack(row, " | ")
            + _clients(row, " | ")
            + (f" | {row['failed']} failed" if row.get("failed") else "")
            + (
                f" | virtual {row['virtual_time']:.1f}s"
                if row.get("virtual_time") is not None
                else ""
            )
            + (f" | epsilon {row['epsilon']:.3f}" if "epsilon" in row else ""),
            flush=True,
        )


class RichDisplay(Display):
    """Live progress bars under a table of finished rounds (a terminal)."""

    def __init__(self, total_rounds: int, err: TextIO | None = None) -> None:
        super().__init__(total_rounds, err)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]:<7}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=True,
        )
        self._run_task = self._progress.add_task(
            "run", total=total_rounds, unit="rounds"
        )
        self._round_task = self._progress.add_task(
            "waiting", total=None, unit="clients"
        )
        self._live = False

    def header(self, text: str, first_round: int) -> None:
        console = self._progress.console
        console.print(text, highlight=False, markup=False)
        console.print(_HEADER, style="bold", highlight=False)
        self._progress.update(self._run_task, completed=first_round)
        self._progress.start()
        self._live = True

    def round_started(self, number: int, clients: int) -> None:
        self._progress.reset(
            self._round_task, total=clients, description=f"round {number}"
        )

    def client_done(self) -> None:
        self._progress.advance(self._round_task)

    def round_finished(self, row: dict[str, Any]) -> None:
        self._progress.console.print(
            format_row(row, self.total), highlight=False, markup=False
        )
        self._progress.advance(self._run_task)

    def close(self) -> None:
        if self._live:
            self._live = False
            self._progress.stop()


def make_display(total_rounds: int, *, quiet: bool) -> Display:
    """The display for this terminal: rich, plain lines, or quiet."""
    if quiet:
        return QuietDisplay(total_rounds)
    if sys.stdout.isatty():
        try:
            return RichDisplay(total_rounds)
        except ImportError:
            print(
                "blazefl: live progress needs rich (pip install 'blazefl[cli]'); "
                "printing plain lines",
                file=sys.stderr,
            )
    return PlainDisplay(total_rounds)
