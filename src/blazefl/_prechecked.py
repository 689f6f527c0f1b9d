"""Updates the coordinator has already checked are not checked again.

A handler's ``check_uplink`` guards two doors: `blazefl.sim.Simulation` runs
it on every update as it arrives (so a malformed one fails only its client),
and a handler such as `blazefl.algorithms.FederatedServer` also runs it in
``load`` for BlazeFL-style loops that call ``load`` directly. The coordinator
feeds checked updates to the handler inside `prechecked`; the handler asks
`check_unless_prechecked`, so each update is checked exactly once on either
path. A context variable, not a flag on the handler: it follows the one call
that set it, and anyio copies it into the worker thread that aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["check_unless_prechecked", "prechecked"]

_PRECHECKED: ContextVar[bool] = ContextVar("blazefl_prechecked", default=False)


@contextmanager
def prechecked() -> Iterator[None]:
    """Within this block, updates handed to a handler were already checked."""
    token = _PRECHECKED.set(True)
    try:
        yield
    finally:
        _PRECHECKED.reset(token)


def check_unless_prechecked(check: Callable[[Any], Any], update: Any) -> None:
    """Run ``check(update)`` unless the caller already did (see `prechecked`)."""
    if not _PRECHECKED.get():
        check(update)
