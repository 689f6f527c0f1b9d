"""Run folders as the dashboard sees them: found under a root, their events tailed.

A run folder is what ``blazefl run`` writes (``config.toml``, ``events.jsonl``,
``metrics.jsonl``, ``summary.json`` at the end); a sweep folder holds run
folders further down. `find_runs` lists every run folder under the roots it is
given, by a name relative to its root. `RunFeed` tails one run's
``events.jsonl`` into an `EventLog` as lines are appended (a partial last line
waits for its newline), so the dashboard shows finished runs and running ones
alike, from the same file the run itself writes: nothing is shared with the
run's process but that file.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from blazefl.dashboard._sse import EventLog

__all__ = ["RunFeed", "find_runs"]

_POLL_SECONDS = 0.2
_MAX_DEPTH = 4
_MARKERS = ("events.jsonl", "config.toml")


def _is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _MARKERS)


def find_runs(roots: list[Path]) -> dict[str, Path]:
    """Every run folder under `roots` (the roots themselves included), by name.

    A name is the folder's path relative to its root (the root's own name for a
    root that is itself a run), so a sweep's runs read ``sweep/lr=0.1/seed=0``.
    """
    runs: dict[str, Path] = {}
    for root in roots:
        base = root.resolve()
        if _is_run(base):
            runs[base.name] = base
            continue
        stack = [(base, 0)]
        while stack:
            folder, depth = stack.pop()
            if depth > _MAX_DEPTH:
                continue
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                if _is_run(child):
                    name = f"{base.name}/{child.relative_to(base).as_posix()}"
                    runs[name] = child
                else:
                    stack.append((child, depth + 1))
    return dict(sorted(runs.items()))


@dataclass
class RunFeed:
    """One run folder: its config, status and a tailed log of its events."""

    name: str
    folder: Path
    log: EventLog = field(default_factory=EventLog)
    _offset: int = 0
    _partial: bytes = b""

    def config(self) -> dict[str, Any]:
        try:
            return tomllib.loads((self.folder / "config.toml").read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return {}

    def status(self) -> dict[str, Any]:
        """``finished`` with the run's summary once summary.json exists."""
        try:
            summary = json.loads((self.folder / "summary.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            last = self.log.last()
            if last is not None and last.get("event") == "round_aborted":
                # A failed or interrupted run writes no summary; it can resume.
                return {"state": "stopped", "events": len(self.log)}
            return {"state": "running", "events": len(self.log)}
        state = summary.get("status", "finished") if isinstance(summary, dict) else ""
        return {"state": str(state), "events": len(self.log), "summary": summary}

    def poll(self) -> None:
        """Append the complete lines written since the last poll."""
        path = self.folder / "events.jsonl"
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                if size < self._offset:  # rewritten (a resume truncated it):
                    self.log.close()  # its readers end and reconnect
                    self.log = EventLog()
                    self._offset, self._partial = 0, b""
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # not an event line: skipped, never fatal
            if isinstance(record, dict):
                self.log.append(record)

    async def tail(self) -> None:
        """Poll until cancelled (the server's lifetime)."""
        while True:
            self.poll()
            await anyio.sleep(_POLL_SECONDS)
