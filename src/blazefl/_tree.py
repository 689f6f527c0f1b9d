"""Walking the tensors inside arbitrary Python objects.

Packages exchanged between server and clients are user-defined: dataclasses,
dicts, lists, tuples, plain objects, nested and occasionally circular. Moving
them to shared memory, packing them into result slots and replacing their
tensors by placeholders are all "map a function over the leaves"; this module
is the one place that knows how to walk such objects.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["iter_tensors", "map_leaves"]


def map_leaves(
    obj: Any,
    fn: Callable[[Any], Any],
    is_leaf: Callable[[Any], bool] = lambda x: isinstance(x, torch.Tensor),
    *,
    max_depth: int = 10,
) -> Any:
    """Return a copy of ``obj`` with every leaf replaced by ``fn(leaf)``.

    Containers (lists, tuples including named tuples, dicts, dataclasses and
    objects with a ``__dict__``) are copied shallowly on the way; anything else
    is shared with the original. Circular references are preserved: an object
    reached twice maps to the same copy. Nesting deeper than ``max_depth`` is
    left as it is.
    """
    memo: dict[int, Any] = {}

    def walk(node: Any, depth: int) -> Any:
        if is_leaf(node):
            return fn(node)
        if depth > max_depth or isinstance(node, str | bytes | int | float | bool):
            return node
        key = id(node)
        if key in memo:
            return memo[key]
        if isinstance(node, list):
            out_list: list[Any] = []
            memo[key] = out_list
            out_list.extend(walk(item, depth + 1) for item in node)
            return out_list
        if isinstance(node, dict):
            out_dict: dict[Any, Any] = type(node)() if type(node) is not dict else {}
            memo[key] = out_dict
            for k, v in node.items():
                out_dict[k] = walk(v, depth + 1)
            return out_dict
        if isinstance(node, tuple):
            items = [walk(item, depth + 1) for item in node]
            out_tuple = type(node)(*items) if hasattr(node, "_fields") else tuple(items)
            memo[key] = out_tuple
            return out_tuple
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            out_dc = copy.copy(node)
            memo[key] = out_dc
            for f in dataclasses.fields(node):
                value = getattr(node, f.name)
                object.__setattr__(out_dc, f.name, walk(value, depth + 1))
            return out_dc
        if hasattr(node, "__dict__") and not isinstance(node, type | torch.nn.Module):
            out_obj = copy.copy(node)
            memo[key] = out_obj
            for name, value in vars(node).items():
                object.__setattr__(out_obj, name, walk(value, depth + 1))
            return out_obj
        return node

    return walk(obj, 0)


def iter_tensors(obj: Any, *, max_depth: int = 10) -> list[torch.Tensor]:
    """Every tensor reachable in ``obj``, in a stable walk order, each once."""
    found: list[torch.Tensor] = []
    seen: set[int] = set()

    def collect(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in seen:
            seen.add(id(t))
            found.append(t)
        return t

    map_leaves(obj, collect, max_depth=max_depth)
    return found
