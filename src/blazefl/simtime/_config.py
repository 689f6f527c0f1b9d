"""`SimTime`: what a simulation needs to run on the virtual clock.

Pass one to `blazefl.sim.Simulation` as ``time=`` (the command line builds it
from ``--profiles``/``--mode`` and friends). Without it nothing about time is
simulated and results are exactly those of plain rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number
from blazefl.simtime._profiles import ProfileSet

__all__ = ["Mode", "SimTime"]

Mode = Literal["sync", "async"]


@dataclass(frozen=True)
class SimTime:
    """Device profiles and the scheduling rules of a timed run.

    :param profiles: one profile per registered client.
    :param mode: ``"sync"``: rounds, each ending when its first k clients (or
        the deadline) are done; ``"async"``: FedBuff / FedAsync, the server
        updating every ``buffer_size`` arrivals.
    :param deadline: sync only: virtual seconds a round waits; clients that
        finish later are stragglers, dropped and reported.
    :param over_selection: sync only: sample ``ceil(k·(1 + x))`` clients and
        keep the first k to finish (by virtual finish time, then client id).
    :param buffer_size: async only: arrivals per server update (FedBuff's K);
        None: the algorithm's own (FedBuff 10, FedAsync 1).
    :param concurrency: async only: clients training at the same time.
    :param epochs: local epochs, for the compute time [default: the client
        work's ``epochs``].
    :param samples: ``cid -> number of training samples`` [default: the
        client work's data set's ``"train"`` partition sizes].
    """

    profiles: ProfileSet
    mode: Mode = "sync"
    deadline: float | None = None
    over_selection: float = 0.0
    buffer_size: int | None = None
    concurrency: int = 10
    epochs: int | None = None
    samples: Callable[[int], int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.profiles, ProfileSet):
            raise ConfigurationError(
                f"profiles must be a blazefl.simtime.ProfileSet, got {self.profiles!r}"
            )
        if self.mode not in ("sync", "async"):
            raise ConfigurationError(
                f"mode must be 'sync' or 'async', got {self.mode!r}"
            )
        if self.deadline is not None:
            check_number("deadline", self.deadline, unit="virtual seconds")
        check_number("over_selection", self.over_selection, allow_zero=True)
        check_int("concurrency", self.concurrency)
        if self.buffer_size is not None:
            check_int("buffer_size", self.buffer_size)
            if self.buffer_size > self.concurrency:
                raise ConfigurationError(
                    f"buffer_size={self.buffer_size} is above concurrency="
                    f"{self.concurrency}: the server would wait for more arrivals "
                    "than clients train at once; use buffer_size <= concurrency"
                )
        if self.epochs is not None:
            check_int("epochs", self.epochs)
        if self.mode == "async" and (self.deadline is not None or self.over_selection):
            raise ConfigurationError(
                "deadline and over_selection apply to synchronous rounds "
                "(mode='sync'); asynchronous mode has no rounds to end"
            )
