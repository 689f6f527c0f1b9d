"""Reading the run folder's logs (``metrics.jsonl``, ``events.jsonl``) strictly.

A run appends one JSON object and a newline per line and flushes it, so a
kill or a full disk can only leave the *last* line incomplete (no newline at
its end): that line is torn and dropped. Any other line that is not what
blazefl writes was edited by hand; `--resume` and `blazefl plot` refuse it,
naming the file, the line and what was wrong, instead of guessing (and
instead of a traceback half-way through the resume).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError

__all__ = ["events_problem", "metrics_problem", "read_records"]

#: Says what is wrong with a record, or None when it is one blazefl writes.
Check = Callable[[Any], str | None]

_NUMBERS = ("train_loss", "test_loss", "test_acc")  # null when not finite
_COUNTS = ("clients", "failed")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _round_problem(record: Any, minimum: int) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__} {_preview(record)}"
    value = record.get("round")
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        return f"'round' must be an integer >= {minimum}, got {_preview(value)}"
    return None


def metrics_problem(record: Any) -> str | None:
    """A ``metrics.jsonl`` row: rounds from 1, numbers or null, counts."""
    problem = _round_problem(record, 1)
    if problem is not None:
        return problem
    for key in _NUMBERS:
        value = record.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            return f"{key!r} must be a number or null, got {_preview(value)}"
    seconds = record.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return f"'seconds' must be a number, got {_preview(seconds)}"
    for key in _COUNTS:
        value = record.get(key)
        if value is not None and (not _is_int(value) or value < 0):
            return f"{key!r} must be an integer >= 0, got {_preview(value)}"
    return None


def events_problem(record: Any) -> str | None:
    """An ``events.jsonl`` line: an event name and a 0-based round."""
    problem = _round_problem(record, 0)
    if problem is None and not isinstance(record.get("event"), str):
        return f"'event' must be an event name, got {_preview(record.get('event'))}"
    return problem


def _preview(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_records(path: Path, check: Check) -> list[tuple[str, dict[str, Any]]]:
    """Every line of ``path`` with its record; a torn last line is dropped.

    Raises `ConfigurationError` naming the line for one that is not UTF-8,
    not JSON, or that ``check`` refuses.
    """
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline: every line is whole
        torn = None
    else:
        torn = len(lines) - 1  # the last line has no newline: a kill may have cut it
    records: list[tuple[str, dict[str, Any]]] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
            if index == torn:
                continue
            reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not JSON"
            raise ConfigurationError(
                f"{path} line {index + 1} is {reason}: {_preview(line)}; blazefl "
                "writes one JSON object a line: fix or delete that line"
            ) from None
        problem = check(record)
        if problem is not None:
            raise ConfigurationError(
                f"{path} line {index + 1}: {problem}; blazefl wrote no such line: "
                "fix or delete it"
            )
        records.append((text, record))
    return records
