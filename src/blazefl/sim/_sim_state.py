"""A `Simulation`'s checkpointable state: what the next round reads.

`Simulation.state_dict` and `load_state_dict` in one place: the handler's
state, every client's state, the round counter, the sampled clients of a
round attempted but not committed, and the virtual clock with simulated time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blazefl._exceptions import ConfigurationError
from blazefl.sim._engine import check_cids

if TYPE_CHECKING:
    from blazefl.sim._simulation import Simulation

__all__ = ["load_simulation_state", "simulation_state"]


def simulation_state(sim: Simulation[Any, Any]) -> dict[str, Any]:
    """`Simulation.state_dict` (see its docstring)."""
    if sim._lock is not None and sim._lock.locked():
        raise ConfigurationError("state_dict() was called while a round runs")
    handler_state = sim._handler.state_dict
    if handler_state is None:
        raise ConfigurationError(
            f"{sim._handler.name} has no state_dict(); checkpoints "
            "need the handler's state (FederatedServer has one)"
        )
    state = {
        "format": 1,
        "round": sim._round,
        "handler": handler_state(),
        "clients": sim._runner.states.state_dict(sim._round),
        "pending_cids": None if sim._pending is None else list(sim._pending[0]),
    }
    if sim._time is not None:
        state["time"] = sim._time.state_dict()
    return state


def load_simulation_state(sim: Simulation[Any, Any], state: dict[str, Any]) -> None:
    """`Simulation.load_state_dict` (see its docstring)."""
    if state.get("format") != 1:
        raise ConfigurationError(
            f"unsupported simulation state format {state.get('format')!r}; "
            "this version of blazefl reads format 1"
        )
    load_handler = sim._handler.load_state_dict
    if load_handler is None:
        raise ConfigurationError(f"{sim._handler.name} has no load_state_dict()")
    load_handler(state["handler"])
    sim._runner.states.load_state_dict(state["clients"], int(state["round"]))
    sim._round = int(state["round"])
    if sim._time is not None:
        if "time" not in state:
            raise ConfigurationError(
                "the state was written without simulated time; resume it "
                "without time= (or start afresh)"
            )
        sim._time.load_state_dict(state["time"])  # with a pending plan
    pending = state.get("pending_cids")
    sim._pending = (
        None
        if pending is None
        # A timed round may keep no client (all stragglers): [] is valid.
        else (
            [int(c) for c in pending] if sim._time else check_cids(pending),
            sim.handler.downlink_package(),
        )
    )
