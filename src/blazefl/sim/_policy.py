"""The failure policy: what failed clients mean for their round.

``"fail_round"`` (the default) aborts a round with any failed client;
``"drop"`` aggregates the survivors, if at least ``min_clients`` survived,
through the handler's ``load_round``. Either way a rejected round applies
nothing. Checked once, when the simulation is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int
from blazefl.sim._handler import BoundHandler
from blazefl.sim._jobs import JobOutcome

__all__ = ["FailurePolicy", "RoundPolicy"]

FailurePolicy = Literal["fail_round", "drop"]
_POLICIES = ("fail_round", "drop")


@dataclass(frozen=True, slots=True)
class RoundPolicy:
    """``on_client_failure`` and ``min_clients``, validated against a handler."""

    on_failure: FailurePolicy
    min_clients: int

    @classmethod
    def of(
        cls,
        on_failure: object,
        min_clients: object,
        handler: BoundHandler[object, object],
    ) -> RoundPolicy:
        if on_failure not in _POLICIES:
            raise ConfigurationError(
                f"on_client_failure must be one of {_POLICIES}, got {on_failure!r}"
            )
        if on_failure == "drop" and handler.load_round is None:
            raise ConfigurationError(
                "on_client_failure='drop' needs a handler with load_round(packages) "
                "to aggregate a round with fewer clients than sampled; "
                f"{handler.name} has none"
            )
        count = check_int("min_clients", min_clients)
        return cls("drop" if on_failure == "drop" else "fail_round", count)

    def check_sampled(self, sampled: int) -> None:
        """Refuse a round that could never succeed, before it runs."""
        if self.on_failure == "drop" and sampled < self.min_clients:
            raise ConfigurationError(
                f"sample_clients() returned {sampled} clients but "
                f"min_clients={self.min_clients}: the round could never succeed; "
                "sample more clients or lower min_clients"
            )

    def reject_reason(
        self, failed: Sequence[JobOutcome], survivors: Sequence[JobOutcome]
    ) -> str | None:
        """Why the round cannot be applied, or None if it can."""
        if not failed:
            return None
        if self.on_failure == "fail_round":
            first = failed[0]
            return (
                f"{len(failed)} of {len(failed) + len(survivors)} clients failed "
                f"(first: client {first.cid}: {first.error})"
            )
        if len(survivors) < self.min_clients:
            return (
                f"only {len(survivors)} clients survived, fewer than min_clients="
                f"{self.min_clients}"
            )
        return None
