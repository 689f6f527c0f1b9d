"""Each worker's own copy of a round's payload, and the check that a client
did not write into it.

Why: a handler's ``downlink_package()`` usually hands out its live state
(`FederatedServer` its own ``params``). Lent as they are, a client that
writes into the payload (``payload.params.add_(1.0)``) would change the global
model, even in a round that then fails and "applies nothing", and would change
what every later client of the round trains from. Torch has no read-only tensors, and a
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

Reuse: a fresh 43 MB tensor costs its page faults (100 ms on a loaded VM,
eight times the copy itself), so the next round's copy (`PayloadCopy.renew`)
and the copy after a write are written into the tensors of the one before
(``copy_``) wherever the place, shape, dtype and kind match and nothing but
this copy refers to the tensor: no reference to the tensor object (a client
that kept ``payload.params``, or a container holding it), no weak reference,
no other tensor on its memory (a view, ``t.data``, an autograd graph), no
``.grad`` or attributes of its own. Anything else gets a fresh clone, as
before; either way a client gets values equal to the source's and memory no
one else can reach.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from blazefl._tree import STRICT, Path, format_path, is_tensor, map_leaves, walk

__all__ = ["Copier", "PayloadCopy", "Seal"]

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


_USE_COUNT: Callable[[int], int] | None = getattr(torch._C, "_storage_Use_Count", None)


def _uses(tensor: torch.Tensor) -> int:
    assert _USE_COUNT is not None
    return _USE_COUNT(tensor.untyped_storage()._cdata)


def _refs(tensors: list[torch.Tensor], index: int) -> int:
    return sys.getrefcount(tensors[index])


# What `_refs` sees for an object only its list holds, measured the same way
# (the count an interpreter reports for a call's argument differs by version).
_ALONE = _refs([torch.empty(0)], 0)
# What `_uses` sees for a storage only one tensor refers to.
_ONE_USE = _uses(torch.empty(1)) if _USE_COUNT is not None else 0


def _reusable(spare: torch.Tensor, source: torch.Tensor) -> bool:
    """Whether ``spare`` (which only its list holds) may take ``source``'s
    values in place of a fresh `_private` copy: same kind and layout, and no
    one but this copy can reach its memory."""
    kind = torch.nn.Parameter if isinstance(source, torch.nn.Parameter) else None
    return (
        _USE_COUNT is not None
        and type(source) in (torch.Tensor, torch.nn.Parameter)
        and type(spare) is (kind or torch.Tensor)
        and spare.requires_grad == source.requires_grad
        and spare.dtype == source.dtype
        and spare.device == source.device
        and spare.layout == torch.strided == source.layout
        and spare.shape == source.shape
        # the strides a fresh copy would have
        and spare.is_contiguous()
        and source.is_contiguous()
        and not (source.is_conj() or source.is_neg() or source.is_quantized)
        and spare.grad is None
        and spare._backward_hooks is None
        and getattr(spare, "_post_accumulate_grad_hooks", None) is None
        and not spare.__dict__
        and weakref.getweakrefcount(spare) == 0
        and _uses(spare) <= _ONE_USE
    )


class Copier:
    """Makes one copy of a payload's tensors, writing into ``spares`` (the
    tensors of the copy before, place by place) where `_reusable` allows, and
    making the others with ``fresh``. ``spares`` must be a list nothing else
    holds (its tensors' references are counted)."""

    def __init__(
        self,
        spares: list[torch.Tensor],
        fresh: Callable[[torch.Tensor], torch.Tensor] = _private,
    ) -> None:
        self.spares = spares
        self.fresh = fresh
        self.made: list[torch.Tensor] = []

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        index = len(self.made)
        spares = self.spares
        if (
            index < len(spares)
            and _refs(spares, index) <= _ALONE
            and _reusable(spares[index], tensor)
        ):
            copy = spares[index]
            with torch.no_grad():
                copy.copy_(tensor)
        else:
            copy = self.fresh(tensor)
        self.made.append(copy)
        return copy


def _version(tensor: torch.Tensor) -> int | None:
    try:
        return int(tensor._version)
    except RuntimeError:  # an inference tensor keeps no version counter
        return None


@dataclass(frozen=True, slots=True)
class Seal:
    """The payload as one client received it (``lent``), and its tensors and
    their versions then."""

    lent: Any
    tensors: tuple[tuple[torch.Tensor, Path, int | None], ...]


def _tensors(lent: Any) -> list[tuple[torch.Tensor, Path]]:
    if isinstance(lent, torch.Tensor):  # the common bare-model payload, quickly
        return [(lent, "payload")]
    return [(t, path) for t, path, _ in walk(lent, is_tensor, STRICT, name="payload")]


def _seal(lent: Any) -> Seal:
    return Seal(lent, tuple((t, path, _version(t)) for t, path in _tensors(lent)))


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
        # The tensors of the latest copy (lent or dropped), in the order they
        # were made: the next copy writes into them where it may (see above).
        self._own: list[torch.Tensor] = []

    def renew(self, source: Any) -> PayloadCopy:
        """A copy of the next round's payload ``source`` that may write into
        this one's tensors once nothing else holds them (this one, too, must
        be gone by then: the caller drops it)."""
        nxt = PayloadCopy(source)
        nxt._own, self._own = self._own, []
        self.release()
        return nxt

    def release(self) -> None:
        """Let go of the current copy (a client still running keeps what it
        was lent; the next `lend` copies again).

        A worker thread calls it when it has no more clients in the round:
        on a free-threaded build an object dropped by another thread than
        the one that made it is freed only when that thread next runs, and
        until then it would keep its tensors from being reused.
        """
        self._copy = _NOT_COPIED

    def lend(self) -> tuple[Any, Seal]:
        """The payload for the next client, and what it looked like before."""
        if self._copy is _NOT_COPIED:
            copier = Copier(self._own)
            self._own = []  # only the list `copier` holds: see `_refs`
            self._copy = map_leaves(self._source, copier, is_tensor, STRICT)
            self._own = copier.made
        return self._copy, _seal(self._copy)

    def written(self, seal: Seal) -> str | None:
        """What the client that got ``seal`` wrote into the payload, or None.

        After a write the copy is dropped: the next client gets a fresh one.
        """
        what = _compare(seal, seal.lent)
        if what is not None and self._copy is seal.lent:
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
