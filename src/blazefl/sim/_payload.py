"""Each worker's own copy of a round's payload, and the check that a client
did not write into it.

Why: a handler's ``downlink_package()`` usually hands out its live state
(`FederatedServer` its own ``params``), and the process executor moves those
very tensors into shared memory. Lent as they are, a client that writes into
the payload (``payload.params.add_(1.0)``) would change the global model, even
in a round that then fails and "applies nothing", and would change what every
later client of the round trains from. Torch has no read-only tensors, and a
copy per client costs a model copy per client. So each worker copies the
payload's tensors once per round (when it runs its first client of the round),
lends that copy to its clients one after another, and records every tensor's
version counter (``Tensor._version``, which each in-place write bumps, through
any view) before a client runs. A client after which a version moved, or a
tensor was swapped for another, fails with `PayloadModifiedError` naming the
place, and the worker copies afresh for its next client.

What the check cannot see: writes that bypass the version counter (through
``t.data``, ``t.numpy()`` or a storage) and changes to parts of the payload
that hold no tensor (a config dict). The copy still keeps such writes away
from the handler's tensors and from other workers; they can reach the next
client on the same worker. Containers on the way to a tensor are copied with
it; tensor-free parts are shared with the handler's object in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from blazefl._tree import STRICT, Path, format_path, is_tensor, map_leaves, walk

__all__ = ["PayloadCopy", "Seal"]

# Stands for "not copied yet" (the payload itself may be None).
_NOT_COPIED: Any = object()


def _private(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` that shares nothing with it, of the same kind."""
    with torch.no_grad():
        copy = tensor.detach().clone()
    if isinstance(tensor, torch.nn.Parameter):
        return torch.nn.Parameter(copy, requires_grad=tensor.requires_grad)
    if tensor.requires_grad:
        copy.requires_grad_(True)
    return copy


def _version(tensor: torch.Tensor) -> int | None:
    try:
        return int(tensor._version)
    except RuntimeError:  # an inference tensor keeps no version counter
        return None


@dataclass(frozen=True, slots=True)
class Seal:
    """The payload's tensors and their versions as one client received them."""

    tensors: tuple[tuple[torch.Tensor, Path, int | None], ...]


def _tensors(lent: Any) -> list[tuple[torch.Tensor, Path]]:
    if isinstance(lent, torch.Tensor):  # the common bare-model payload, quickly
        return [(lent, "payload")]
    return [(t, path) for t, path, _ in walk(lent, is_tensor, STRICT, name="payload")]


def _seal(lent: Any) -> Seal:
    return Seal(tuple((t, path, _version(t)) for t, path in _tensors(lent)))


class PayloadCopy:
    """One worker's private copy of a round's payload, lent to one client at a
    time.

    An executor makes one per worker per round from what it shared with that
    worker (``source``: the handler's object in-process, the shared-memory
    mapping in a process worker, the object store's copy on a Ray actor) and
    passes it to `execute_job` for each client the worker runs. Nothing is
    copied until the first client borrows it, and only again after a client
    wrote into it.
    """

    def __init__(self, source: Any) -> None:
        self._source = source
        self._copy: Any = _NOT_COPIED

    def lend(self) -> tuple[Any, Seal]:
        """The payload for the next client, and what it looked like before."""
        if self._copy is _NOT_COPIED:
            self._copy = map_leaves(self._source, _private, is_tensor, STRICT)
        return self._copy, _seal(self._copy)

    def written(self, seal: Seal) -> str | None:
        """What the client that got ``seal`` wrote into the payload, or None.

        After a write the copy is dropped: the next client gets a fresh one.
        """
        what = _compare(seal, self._copy)
        if what is not None:
            self._copy = _NOT_COPIED
        return what


def _compare(seal: Seal, lent: Any) -> str | None:
    try:
        now = _tensors(lent)
    except Exception as exc:  # e.g. nested past the walker's limit now
        return f"its structure was changed ({exc})"
    for (before, path, version), (after, _) in zip(seal.tensors, now, strict=False):
        if after is not before:
            return f"the tensor at {format_path(path)} was replaced by another object"
        if version is not None and _version(after) != version:
            return (
                f"the tensor at {format_path(path)} (shape {tuple(after.shape)}) "
                "was written in place"
            )
    if len(now) != len(seal.tensors):
        return (
            f"it held {len(seal.tensors)} tensors and now holds {len(now)}: tensors "
            "were added or removed"
        )
    return None
