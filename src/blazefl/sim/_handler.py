"""The server handler as the coordinator sees it: one contract, checked once.

`Simulation` drives any object with BlazeFL's four round methods (the
`ServerHandler` protocol). Everything else a handler may offer is an optional
capability, looked up once when the simulation is built, so the round loop
never probes the handler with ``getattr`` again:

- ``load_round(packages)``: aggregate a round with fewer updates than sampled
  (the survivors under ``on_client_failure="drop"``); full rounds go through
  ``load``, one update at a time in slot order, as in BlazeFL's own loop.
- ``check_uplink(package)``: refuse a malformed update. The engine runs it once
  per update, as the update arrives, so a malformed one becomes that client's
  failed slot before anything is aggregated; the updates are then fed to the
  handler inside `prechecked`, so a handler whose ``load`` checks its input
  for direct callers (``FederatedServer`` does) does not check them again.
- ``round_fold()``: a fold of the round's updates (`blazefl.sim._buffer.
  HandlerFold`), or None: the engine adds each update to it as the slots
  before it are in, while the other clients train, and aggregates the round
  inside its ``applied(packages)`` (``FederatedServer`` has it; see
  docs/algorithms.md, "Aggregate dtype and folding").
- ``get_summary()``: numbers reported with the round (e.g. an evaluation).
- ``state_dict()`` / ``load_state_dict(state)``: what a checkpoint holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from blazefl._exceptions import ConfigurationError
from blazefl._prechecked import prechecked
from blazefl.sim._buffer import HandlerFold, PrefixFold

__all__ = ["BoundHandler", "ServerHandler"]

UplinkT = TypeVar("UplinkT")
UplinkT_contra = TypeVar("UplinkT_contra", contravariant=True)
DownlinkT_co = TypeVar("DownlinkT_co", covariant=True)

_REQUIRED = ("sample_clients", "downlink_package", "load", "is_stopped")


@runtime_checkable
class ServerHandler(Protocol[UplinkT_contra, DownlinkT_co]):
    """What `Simulation` needs of a server handler: BlazeFL's round methods.

    Any BlazeFL 3.0 ``BaseServerHandler`` fits, and so does
    `blazefl.algorithms.FederatedServer`. The optional capabilities
    (``load_round``, ``check_uplink``, ``get_summary``, ``state_dict`` and
    ``load_state_dict``) are described in this module's docstring.
    """

    def sample_clients(self) -> list[int]:
        """The ids of the clients that train this round."""
        ...

    def downlink_package(self) -> DownlinkT_co:
        """The payload broadcast to this round's clients."""
        ...

    def load(self, payload: UplinkT_contra) -> bool:
        """Take one update; True once it completed (and aggregated) the round."""
        ...

    def is_stopped(self) -> bool:
        """True once training is over; checked before every round."""
        ...


def _optional(handler: object, name: str) -> Callable[..., Any] | None:
    method = getattr(handler, name, None)
    return method if callable(method) else None


@dataclass(frozen=True, slots=True)
class BoundHandler(Generic[UplinkT, DownlinkT_co]):
    """A handler with its capabilities resolved: built once per simulation."""

    handler: ServerHandler[UplinkT, DownlinkT_co]
    load_round: Callable[[list[UplinkT]], Any] | None
    check_uplink: Callable[[UplinkT], Any] | None
    round_fold: Callable[[], HandlerFold | None] | None
    get_summary: Callable[[], Mapping[str, Any]] | None
    state_dict: Callable[[], dict[str, Any]] | None
    load_state_dict: Callable[[dict[str, Any]], Any] | None

    @classmethod
    def of(cls, handler: Any) -> BoundHandler[Any, Any]:
        """Check the required methods and look up the optional ones.

        :raises ConfigurationError: naming the first required method missing.
        """
        for name in _REQUIRED:
            if _optional(handler, name) is None:
                raise ConfigurationError(
                    f"handler {handler!r} has no {name}() method; expected a "
                    "BlazeFL server handler (sample_clients, downlink_package, "
                    "load, is_stopped)"
                )
        return cls(
            handler,
            load_round=_optional(handler, "load_round"),
            check_uplink=_optional(handler, "check_uplink"),
            round_fold=_optional(handler, "round_fold"),
            get_summary=_optional(handler, "get_summary"),
            state_dict=_optional(handler, "state_dict"),
            load_state_dict=_optional(handler, "load_state_dict"),
        )

    @property
    def name(self) -> str:
        return type(self.handler).__name__

    def start_fold(self, slots: int) -> PrefixFold | None:
        """The fold of a round of ``slots`` sampled clients, if the handler
        folds this round (``round_fold()``)."""
        fold = None if self.round_fold is None else self.round_fold()
        return None if fold is None else PrefixFold(fold, slots)

    def aggregate(
        self,
        packages: list[UplinkT],
        *,
        partial: bool,
        fold: PrefixFold | None = None,
    ) -> None:
        """Feed one round's checked updates to the handler, in slot order.

        One ``load`` per update, or ``load_round`` for a ``partial`` round
        (some sampled clients were dropped); with the round's ``fold``, the
        handler's aggregation finds the updates already folded.
        """
        folded = nullcontext() if fold is None else fold.applied(packages)
        checked = prechecked() if self.check_uplink is not None else nullcontext()
        with folded, checked:
            if partial:
                assert self.load_round is not None  # checked at construction
                self.load_round(packages)
            else:
                for package in packages:
                    self.handler.load(package)

    def summary(self) -> dict[str, Any]:
        """The handler's ``get_summary()`` (an evaluation), or {} without one."""
        return dict(self.get_summary()) if self.get_summary is not None else {}
