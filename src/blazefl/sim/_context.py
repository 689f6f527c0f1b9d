"""What one client's work receives, and the state the coordinator keeps for it.

A client's work is any callable ``work(ctx, payload) -> uplink``. Everything the
work may depend on besides the payload arrives in the `ClientContext`, so the
result is a pure function of (payload, context): that is what makes a run
bitwise reproducible whichever worker runs the client and whenever it finishes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch

from blazefl._tree import map_leaves
from blazefl.reproducibility import RNGSuite, RNGSuiteState

__all__ = ["ClientContext", "ClientState", "ClientWork", "StopFlag"]

UplinkT_co = TypeVar("UplinkT_co", covariant=True)
DownlinkT_contra = TypeVar("DownlinkT_contra", contravariant=True)


class StopFlag(Protocol):
    """A flag the coordinator sets when a client must stop early.

    A `threading.Event` in thread workers, a `multiprocessing.Event` in process
    workers. Long-running work should check `is_set()` between steps.
    """

    def is_set(self) -> bool: ...


class ClientWork(Protocol[DownlinkT_contra, UplinkT_co]):
    """One client's local work: the native way to write a client.

    Called once per sampled client per round, on whatever worker the executor
    picks. It must depend only on ``payload`` and ``ctx`` (draw randomness from
    ``ctx.rng``, keep per-client state in ``ctx.state``, cache models per worker
    in ``ctx.cache``). For the process executor it must be picklable: a
    module-level function or an instance of a module-level class.
    """

    def __call__(self, ctx: ClientContext, payload: DownlinkT_contra) -> UplinkT_co: ...


@dataclass(slots=True)
class ClientState:
    """What the coordinator keeps for one client between rounds.

    ``rng`` is the client's RNG suite state (derived from the run seed and the
    client id on first use); ``data`` is free-form algorithm state (SCAFFOLD's
    control variate, a personalised head, ...). Both are committed only when the
    client's round commits, so a cancelled or failed round leaves them untouched.
    """

    rng: RNGSuiteState
    data: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> ClientState:
        """A copy the client's work may mutate without touching this one."""
        return ClientState(self.rng, copy.deepcopy(self.data) if self.data else {})

    def __reduce__(self) -> tuple[Any, ...]:
        # Crossing to a process worker and back, ``data``'s tensors travel by
        # value as raw bytes. Pickled as they are, the process executor's
        # ForkingPickler would move each one to a new shared-memory segment
        # and pass its file descriptor over a socket: milliseconds per client
        # per round, for state that is usually small. (torch.save is no
        # better: about a millisecond for a small dict.)
        return (_rebuild_state, (self.rng, _pack(self.data)))


@dataclass(slots=True)
class ClientContext:
    """Everything one client's work may depend on besides the payload.

    :param cid: the client id.
    :param round: the round index (0-based, counted by the coordinator).
    :param slot: the client's position among this round's sampled clients.
    :param device: the torch device this client should use.
    :param rng: the client's own RNG suite, continued across rounds.
    :param state: the client's persistent state dict, continued across rounds.
    :param stop_event: set when the client must stop early (cancel, timeout).
    :param log: a structlog logger bound to ``round`` and ``cid``.
    :param cache: scratch space owned by the worker running this client and kept
        for the worker's lifetime (models, optimizers' buffers); never put
        client-specific state here.
    :param metrics: numbers the work wants reported (loss, samples, ...); they
        appear in the client's event, log line and round result.
    :param worker: a label of the worker running this client.
    """

    cid: int
    round: int
    slot: int
    device: str
    rng: RNGSuite
    state: dict[str, Any]
    stop_event: StopFlag
    log: Any
    cache: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    worker: str = ""

    def should_stop(self) -> bool:
        """True once the coordinator asked this client to stop."""
        return self.stop_event.is_set()


# Compared by identity: two equal tensors in a set stay two tensors.
@dataclass(frozen=True, slots=True, eq=False)
class _TensorBytes:
    dtype: torch.dtype
    shape: tuple[int, ...]
    raw: bytes


def _pack(data: dict[str, Any]) -> Any:
    if not data:
        return None
    packed: dict[int, _TensorBytes] = {}

    def pack(t: torch.Tensor) -> _TensorBytes:
        # One tensor under two names is packed (and rebuilt) once.
        if id(t) not in packed:
            flat = t.detach().to("cpu").contiguous().reshape(-1)
            packed[id(t)] = _TensorBytes(
                t.dtype, tuple(t.shape), flat.view(torch.uint8).numpy().tobytes()
            )
        return packed[id(t)]

    return map_leaves(data, pack)


def _rebuild_state(rng: RNGSuiteState, packed: Any) -> ClientState:
    if packed is None:
        return ClientState(rng, {})
    rebuilt: dict[int, torch.Tensor] = {}

    def unpack(b: _TensorBytes) -> torch.Tensor:
        if id(b) not in rebuilt:
            if b.raw:
                flat = torch.frombuffer(bytearray(b.raw), dtype=torch.uint8)
                rebuilt[id(b)] = flat.view(b.dtype).reshape(b.shape)
            else:
                rebuilt[id(b)] = torch.empty(b.shape, dtype=b.dtype)
        return rebuilt[id(b)]

    data = map_leaves(packed, unpack, is_leaf=lambda x: isinstance(x, _TensorBytes))
    return ClientState(rng, data)
