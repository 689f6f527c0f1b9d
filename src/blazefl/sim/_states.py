"""The coordinator's store of per-client state (RNG suites and algorithm state).

A client's state is created lazily the first time it is sampled, from the run
seed and its id, so a federation of any registered size costs memory only for
the clients that actually took part. Two stores:

* `MemoryStateStore` (the default) keeps every touched client's state in a
  dict: fastest, and it grows with the number of distinct clients sampled
  (about 9 KB each: the RNG suite's Python, NumPy and torch streams).
* `DiskStateStore` (in `_disk_states`) keeps them in a SQLite file and holds
  nothing in memory between rounds, so memory stays proportional to the
  clients of one round even after a million distinct clients took part.

Both commit a round's states in one step (the disk store in one transaction),
so a round is never half-applied.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.reproducibility import RNGSuiteState, create_client_rng_suite
from blazefl.sim._context import ClientState

__all__ = ["ClientStateStore", "MemoryStateStore", "make_store"]


class ClientStateStore(ABC):
    """Client id -> `ClientState`, created on first use from (seed, cid)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    @property
    def seed(self) -> int:
        return self._seed

    def fresh(self, cid: int) -> ClientState:
        """The state a client starts with: its suite derived from (seed, cid)."""
        return ClientState(create_client_rng_suite(self._seed, cid).get_state())

    def get(self, cid: int) -> ClientState:
        """The client's committed state (a fresh one if it never committed)."""
        return self.get_many([cid])[0]

    @abstractmethod
    def get_many(self, cids: Sequence[int]) -> list[ClientState]:
        """The committed states of ``cids``, in that order."""

    def committed_data(self, cids: Sequence[int]) -> list[dict[str, Any]]:
        """The committed algorithm state (``ClientState.data``) of ``cids``, in
        that order, ``{}`` for a client that never committed; creates and
        stores nothing (per-client evaluation reads it, never writes it)."""
        return [state.data for state in self.get_many(cids)]

    @abstractmethod
    def commit_round(
        self, rounds: int, states: Iterable[tuple[int, ClientState]]
    ) -> None:
        """Make ``states`` the clients' states, all at once.

        ``rounds`` is the number of rounds committed once this one is (the
        simulation's round counter after the commit).
        """

    @abstractmethod
    def __len__(self) -> int:
        """How many clients have a committed state."""

    @abstractmethod
    def __contains__(self, cid: object) -> bool: ...

    @abstractmethod
    def state_dict(self, rounds: int) -> dict[str, Any]:
        """What a checkpoint taken after ``rounds`` committed rounds needs."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], rounds: int) -> None:
        """Return to what `state_dict` captured after ``rounds`` rounds."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Hold files or connections (and their claims) until `close`: called
        when a simulation starts, so the run keeps what it uses."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections (the store reopens on next use)."""

    def _check_seed(self, seed: object) -> None:
        if seed != self._seed:
            raise ConfigurationError(
                f"the checkpoint's client states derive from seed {seed!r}, "
                f"this run's seed is {self._seed}"
            )


class MemoryStateStore(ClientStateStore):
    """Every touched client's state in a dict; checkpoints copy all of it."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self._states: dict[int, ClientState] = {}

    def get_many(self, cids: Sequence[int]) -> list[ClientState]:
        out = []
        for cid in cids:
            state = self._states.get(cid)
            if state is None:
                state = self._states[cid] = self.fresh(cid)
            out.append(state)
        return out

    def committed_data(self, cids: Sequence[int]) -> list[dict[str, Any]]:
        # Not get_many: it would store a fresh state for every client asked.
        return [
            state.data if (state := self._states.get(cid)) is not None else {}
            for cid in cids
        ]

    def commit_round(
        self, rounds: int, states: Iterable[tuple[int, ClientState]]
    ) -> None:
        self._states.update(states)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, cid: object) -> bool:
        return cid in self._states

    def state_dict(self, rounds: int) -> dict[str, Any]:
        return {
            "seed": self._seed,
            "clients": {
                str(cid): {"rng": state.rng.to_dict(), "data": state.data}
                for cid, state in sorted(self._states.items())
            },
        }

    def load_state_dict(self, state: dict[str, Any], rounds: int) -> None:
        self._check_seed(state.get("seed"))
        if state.get("store") == "disk":
            raise ConfigurationError(
                "the checkpoint's client states live in the on-disk store "
                f"{state.get('path')!r}; pass client_state_path= to resume it"
            )
        self._states = {
            int(cid): ClientState(RNGSuiteState.from_dict(entry["rng"]), entry["data"])
            for cid, entry in state["clients"].items()
        }


def make_store(seed: int, path: str | os.PathLike[str] | None) -> ClientStateStore:
    """The store a simulation asked for: on disk at ``path``, else in memory."""
    if path is None:
        return MemoryStateStore(seed)
    from blazefl.sim._disk_states import DiskStateStore  # sqlite3 only when asked

    return DiskStateStore(seed, path)
