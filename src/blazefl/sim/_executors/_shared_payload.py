"""The round's payload as process workers map it: one copy in shared memory,
written into the same segments round after round.

Why: moving the handler's tensors to shared memory (``share_memory_``) made a
new segment every round, 43 MB of fresh pages for the parent to fault in and
copy into (160 ms of the coordinator's time on a loaded 2-core VM, taken from
the workers' training) and for every worker to map and fault in again. So the
executor keeps its own copy of the payload in shared memory and writes each
round's values into it, by `PayloadCopy`'s rules (same place, shape, dtype and
kind, and nothing in this process still holding the tensor, its memory or a
view of it); anything else gets a new segment. A worker still holding last
round's mapping of a segment gets that mapping back from torch's cache of
received storages, already faulted in. The handler's tensors stay where they
are: no client ever maps them.

Why writing into a segment the workers mapped is safe: a worker reads a
payload only while it runs a client of that payload's round (its
`PayloadCopy` copies out of it), and an open round's session holds its copy,
so a segment is rewritten only once no round that uses it is open; a worker
that was still running a client when its round closed was killed by then.

What is not copied travels as before, moved to shared memory in place: a
tensor off the CPU, a non-contiguous one (its strides reach the clients), a
subclass, one in a set (sets travel by value).

Leaks: as before, with torch's ``file_descriptor`` strategy each segment is
unlinked as it is created; it lives as long as some process maps it.
"""

from __future__ import annotations

from typing import Any

import torch

from blazefl._shared_tensors import SHM_REACH
from blazefl._tree import is_tensor, map_leaves
from blazefl.sim._payload import Copier

__all__ = ["SharedPayload"]


def _copyable(tensor: torch.Tensor) -> bool:
    return (
        type(tensor) in (torch.Tensor, torch.nn.Parameter)
        and tensor.device.type == "cpu"
        and tensor.layout == torch.strided
        and tensor.is_contiguous()
        and tensor.numel() > 0
        and not (tensor.is_conj() or tensor.is_neg() or tensor.is_quantized)
    )


def _shared_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``tensor`` in a new shared-memory segment."""
    nbytes = tensor.numel() * tensor.element_size()
    storage: torch.UntypedStorage = torch.UntypedStorage._new_shared(nbytes)  # type: ignore[no-untyped-call]
    copy = torch.empty(0, dtype=tensor.dtype)
    copy.set_(storage, 0, tensor.shape, tensor.stride())  # contiguous (`_copyable`)
    with torch.no_grad():
        copy.copy_(tensor)
    if isinstance(tensor, torch.nn.Parameter):
        return torch.nn.Parameter(copy, requires_grad=tensor.requires_grad)
    if tensor.requires_grad:
        copy.requires_grad_(True)
    return copy


class SharedPayload:
    """The executor's shared-memory copy of each round's payload."""

    def __init__(self) -> None:
        # The tensors of the latest copy, in the order they were made.
        self._own: list[torch.Tensor] = []

    def share(self, payload: Any) -> Any:
        """``payload`` with its tensors in shared memory, for this round."""
        copier = Copier(self._own, _shared_copy)
        self._own = []  # only the list `copier` holds (see `Copier`)

        def leaf(tensor: torch.Tensor) -> torch.Tensor:
            if _copyable(tensor):
                return copier(tensor)
            tensor.share_memory_()  # type: ignore[no-untyped-call]
            return tensor

        shared = map_leaves(payload, leaf, is_tensor, SHM_REACH)
        self._own = copier.made
        return shared

    def clear(self) -> None:
        self._own = []
