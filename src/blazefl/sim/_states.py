"""The coordinator's store of per-client state (RNG suites and algorithm state).

A client's state is created lazily the first time it is sampled, from the run
seed and its id, so a federation of any registered size costs memory only for
the clients that actually took part.
"""

from __future__ import annotations

from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.reproducibility import RNGSuiteState, create_client_rng_suite
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

    def state_dict(self) -> dict[str, Any]:
        """Every client's state as plain data and tensors (for checkpoints)."""
        return {
            "seed": self._seed,
            "clients": {
                str(cid): {"rng": state.rng.to_dict(), "data": state.data}
                for cid, state in sorted(self._states.items())
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every client's state with what `state_dict` captured."""
        if state.get("seed") != self._seed:
            raise ConfigurationError(
                f"the checkpoint's client states derive from seed "
                f"{state.get('seed')!r}, this run's seed is {self._seed}"
            )
        self._states = {
            int(cid): ClientState(RNGSuiteState.from_dict(entry["rng"]), entry["data"])
            for cid, entry in state["clients"].items()
        }
