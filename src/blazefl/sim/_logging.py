"""structlog set-up for people (console) and machines (JSON lines).

The library logs through ``structlog.get_logger("blazefl")`` and never
configures structlog on import: an application embedding a simulation keeps
its own configuration. `configure_logging` is the one-call set-up for scripts
and the command line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog
import structlog.contextvars

from blazefl._exceptions import ConfigurationError

__all__ = ["configure_logging", "get_logger", "replay"]

_LEVELS = ("debug", "info", "warning", "error")


def get_logger() -> Any:
    """The logger the coordinator emits its events on."""
    return structlog.get_logger("blazefl")


def configure_logging(
    format: Literal["console", "json"] = "console",
    *,
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog globally: readable console lines or JSON lines.

    Bound context (``round``, ``cid``) is merged from `structlog.contextvars`,
    which anyio copies into worker threads, so client work's own log lines
    carry the round and client they belong to.
    """
    if format not in ("console", "json"):
        raise ConfigurationError(
            f"log format must be 'console' or 'json', got {format!r}"
        )
    if level not in _LEVELS:
        raise ConfigurationError(f"log level must be one of {_LEVELS}, got {level!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer(default=repr)
        if format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if format == "json":
        processors.append(structlog.processors.format_exc_info)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def replay(entries: list[dict[str, Any]]) -> None:
    """Re-emit log lines captured in a process worker or Ray actor through this
    process, at their own level (``log_level``, as `structlog.testing.LogCapture`
    records it)."""
    log = get_logger()
    for entry in entries:
        fields = dict(entry)
        level = str(fields.pop("log_level", "info"))
        event = fields.pop("event", "client_log")
        method = getattr(log, level, log.info)
        method(event, **fields)
