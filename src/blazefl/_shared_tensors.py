"""Tensors that travel through shared memory, on the one walker (`_tree`).

A process worker's result, or a BlazeFL ``ProcessPoolClientTrainer``'s uplink
buffer, crosses without pickling its tensors: the parent moves a skeleton's
tensors to shared memory once (`share_tensors`), the worker writes into them
and returns a copy in which each tensor is an `SHMHandle`
(`replace_with_handles`), and the parent puts the shared tensors back in place
of the handles (`rebuild_from_handles`). These helpers raise past the walker's
depth limit; ``blazefl.core``'s BlazeFL-named wrappers apply BlazeFL 3.0's own
``max_depth`` rule on top of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl._tree import (
    Leaf,
    Mapper,
    Path,
    Reach,
    format_path,
    is_tensor,
    iter_tensors,
    map_leaves,
)

__all__ = [
    "SHM_REACH",
    "SHMHandle",
    "rebuild_from_handles",
    "replace_with_handles",
    "share_tensors",
]

# Shared memory pairs a handle copy with a buffer place by place; a set has no
# places, so its tensors stay in it and travel by value.
SHM_REACH = Reach(opaque=(set, frozenset))


@dataclass(frozen=True, slots=True)
class SHMHandle:
    """Placeholder for a tensor that travels through shared memory instead.

    Public as ``blazefl.core.utils.SHMHandle``, where BlazeFL 3.0 defines it
    (``blazefl.core.utils`` publishes it under that path).
    """


def share_tensors(obj: Any, reach: Reach = SHM_REACH) -> Any:
    """Move every tensor in ``obj`` to shared memory, in place; return ``obj``.

    Every depth is checked before anything is shared, so an error changes
    nothing.
    """
    for tensor in iter_tensors(obj, reach):
        tensor.share_memory_()  # type: ignore[no-untyped-call]
    return obj


def replace_with_handles(obj: Any, reach: Reach = SHM_REACH) -> Any:
    """A copy of ``obj`` with an `SHMHandle` wherever it holds a tensor."""
    return map_leaves(obj, lambda _: SHMHandle(), is_tensor, reach)


class _Rebuilder(Mapper):
    # Each handle takes the tensor at its own place in the buffer, even when
    # the worker reused one handle object for several places.
    memo_leaves = False

    def on_leaf(self, leaf: Any, other: Any, path: Path) -> Any:
        if not isinstance(other, torch.Tensor):
            raise _mismatch(path, "a tensor", other)
        return other

    def child(self, other: Any, how: str, key: Any) -> Any:
        # Only the places that lead to a handle must exist in the buffer: the
        # result may carry extra plain values (a loss, a note) the skeleton lacks.
        if how == "attr":
            return getattr(other, key, _MISSING)
        try:
            return other[key]
        except (LookupError, TypeError):
            return _MISSING

    def check(self, node: Any, other: Any, path: Path) -> None:
        if other is _MISSING:
            raise _mismatch(path, f"a {type(node).__name__}", other)
        if isinstance(node, list | tuple) and not isinstance(other, list | tuple):
            raise _mismatch(path, "a list or tuple", other)
        if isinstance(node, dict) and not isinstance(other, dict):
            raise _mismatch(path, "a dict", other)


# Stands for a place that exists in the handle copy but not in the buffer.
_MISSING: Any = object()


def _mismatch(path: Path, expected: str, seen: object) -> ConfigurationError:
    found = "nothing" if seen is _MISSING else type(seen).__name__
    return ConfigurationError(
        "shared-memory buffer does not match the handle copy at "
        f"{format_path(path)}: expected "
        f"{expected}, found {found}; pass the buffer the worker wrote into"
    )


def rebuild_from_handles(
    handle_obj: Any, shm_obj: Any, reach: Reach = SHM_REACH
) -> Any:
    """The inverse of `replace_with_handles`: a copy of ``handle_obj`` in which
    every `SHMHandle` is the tensor at the same place in ``shm_obj``.

    The tensors are not copied: the result aliases the buffer. Raises
    `ConfigurationError` when the two structures do not match.
    """
    is_handle: Leaf = lambda x: isinstance(x, SHMHandle)  # noqa: E731
    return _Rebuilder(is_handle, reach).visit(handle_obj, shm_obj, 0, "obj")
