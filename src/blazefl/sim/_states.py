"""The coordinator's store of per-client state (RNG suites and algorithm state).

A client's state is created lazily the first time it is sampled, from the run
seed and its id, so a federation of any registered size costs memory only for
the clients that actually took part.
"""

from __future__ import annotations

from blazefl.reproducibility import create_client_rng_suite
from blazefl.sim._context import ClientState

__all__ = ["ClientStateStore"]


class ClientStateStore:
    """Client id -> `ClientState`, created on first use from (seed, cid)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._states: dict[int, ClientState] = {}

    @property
    def seed(self) -> int:
        return self._seed

    def get(self, cid: int) -> ClientState:
        """The client's committed state (created on first use)."""
        state = self._states.get(cid)
        if state is None:
            state = ClientState(create_client_rng_suite(self._seed, cid).get_state())
            self._states[cid] = state
        return state

    def commit(self, cid: int, state: ClientState) -> None:
        """Make ``state`` the client's state for the next round."""
        self._states[cid] = state

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, cid: object) -> bool:
        return cid in self._states
