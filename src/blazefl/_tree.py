"""Walking the tensors inside arbitrary Python objects: the one walker.

Packages exchanged between server and clients are user-defined and nested,
occasionally circular. The NaN check, the shared-memory codec
(`blazefl._shared_tensors`) and the codecs that pack results and client
states all walk them here, so they agree on what a package holds.

Entered: lists, tuples (named tuples too), dicts (and subclasses), sets and
frozensets, and objects with a ``__dict__`` or ``__slots__`` (dataclasses,
frozen or slotted, too). An ``nn.Module`` is such an object: its parameters
and buffers are reached through ``_parameters``, ``_buffers`` and
``_modules``, so a module inside an update is checked and packed like the rest
of it. Classes, modules, functions, methods, partials, enum members and
tensors the walk is not looking for are kept as they are. A container reached
twice is entered once and a leaf reached twice is mapped once, so aliasing and
cycles survive a copy.

Depth: the object itself is depth 0, each container adds one, and a leaf past
`MAX_DEPTH` raises `ConfigurationError` naming its path: it is never skipped.
(`Reach.blazefl` is BlazeFL 3.0's lenient reading, for the BlazeFL-named
helpers in `blazefl.core`.) Leaf-free structure is fine at any depth.
"""

from __future__ import annotations

import copy
import enum
import functools
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError

__all__ = [
    "MAX_DEPTH",
    "Leaf",
    "Mapper",
    "Path",
    "STRICT",
    "Reach",
    "is_tensor",
    "iter_tensors",
    "leaves",
    "format_path",
    "map_leaves",
    "walk",
]

# Deep enough for any package seen in practice (a module costs two levels: it
# and its _parameters), shallow enough for the recursive copy's stack.
MAX_DEPTH = 64

Leaf = Callable[[Any], bool]


def is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


@dataclass(frozen=True, slots=True)
class Reach:
    """How far a walk goes: ``strict`` walks raise on a leaf past ``max_depth``,
    lenient ones keep a container at depth >= ``max_depth`` unentered. An
    object's attributes lie ``attr_step`` levels below it; ``opaque`` types
    are kept as they are, like classes and functions."""

    max_depth: int = MAX_DEPTH
    strict: bool = True
    attr_step: int = 1
    opaque: tuple[type, ...] = ()

    @classmethod
    def blazefl(cls, max_depth: int) -> Reach:
        """BlazeFL 3.0's ``process_tensors_in_object``: it reaches an object's
        attributes through its ``__dict__``, a dict one level further down,
        and does not enter sets."""
        return cls(max_depth, strict=False, attr_step=2, opaque=(set, frozenset))

    def enters(self, kind: str, depth: int) -> bool:
        """Whether a lenient walk may enter a ``kind`` node at ``depth``."""
        below = self.attr_step - 1 if kind == "object" else 0
        return depth + below < self.max_depth


STRICT = Reach()
# Things that carry a __dict__ but are not data: descending into them would
# copy or rewrite classes, modules, functions or enum singletons.
_OPAQUE: tuple[type, ...] = (type, types.ModuleType, types.FunctionType)
_OPAQUE += (types.BuiltinFunctionType, types.MethodType, functools.partial)
_OPAQUE += (enum.Enum, torch.Tensor)
_ATOMS = frozenset((str, bytes, int, float, bool, complex, type(None)))
_KEPT: tuple[type, ...] = (str, bytes, bytearray, int, float, complex, type(None))
_KEPT += _OPAQUE
_SLOTTED: dict[type, bool] = {}


def _has_slots(klass: type) -> bool:
    if klass not in _SLOTTED:
        _SLOTTED[klass] = any("__slots__" in k.__dict__ for k in klass.__mro__[:-1])
    return _SLOTTED[klass]


def _kind(node: Any, reach: Reach) -> str | None:
    """The kind of container ``node`` is, or None for something kept as is."""
    if isinstance(node, (_KEPT, reach.opaque)):
        return None
    if isinstance(node, list):
        return "list"
    if isinstance(node, tuple):
        return "tuple"
    if isinstance(node, dict):
        return "dict"
    if isinstance(node, set | frozenset):
        return "set"
    if hasattr(node, "__dict__") or _has_slots(type(node)):
        return "object"
    return None


def _attribute_names(obj: object) -> Iterator[str]:
    """Yield the names of the instance attributes that are set on ``obj``."""
    seen: set[str] = set()
    instance_dict = getattr(obj, "__dict__", None)
    if isinstance(instance_dict, dict):
        seen.update(instance_dict)
        yield from instance_dict
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            name = slot
            if slot.startswith("__") and not slot.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{slot}"
            if name not in seen and hasattr(obj, name):
                seen.add(name)
                yield name


# A place: the root's name, or (parent place, how it hangs, key), formatted
# only for a message, so a walk builds no strings.
Path = str | tuple[Any, str, Any]


def format_path(path: Path) -> str:
    """``obj['a'][0].weight`` for a place reached by a walk."""
    steps: list[str] = []
    while isinstance(path, tuple):
        path, how, key = path
        if how == "attr":
            steps.append(f".{key}")
        else:
            steps.append(f"{{{key}}}" if how == "elem" else f"[{key!r}]")
    return path + "".join(reversed(steps))


def _children(node: Any, kind: str) -> Iterator[tuple[str, Any, Any]]:
    """``(how it hangs, key, value)`` for each child of a container."""
    if kind == "dict":
        return (("item", k, v) for k, v in list(node.items()))
    if kind == "object":
        return (("attr", n, getattr(node, n)) for n in list(_attribute_names(node)))
    # A set's elements have no keys: their place is their position.
    how = "item" if kind != "set" else "elem"
    return ((how, i, v) for i, v in enumerate(list(node)))


def _too_deep(path: Path, depth: int, max_depth: int) -> ConfigurationError:
    # A tensor the walk skipped would be a lost result or an unchecked NaN.
    return ConfigurationError(
        f"tensor at {format_path(path)} is nested {depth} levels deep, past the "
        f"limit of {max_depth}; keep tensors at most {max_depth} containers deep "
        "(flatten nested lists, dicts and objects, e.g. into one dict of tensors)"
    )


def _below(
    node: Any, kind: str, path: Path, depth: int
) -> Iterator[tuple[Any, Path, int]]:
    return ((v, (path, how, k), depth) for how, k, v in _children(node, kind))


def walk(
    obj: Any, is_leaf: Leaf, reach: Reach, *, name: Path = "obj", depth: int = 0
) -> Iterator[tuple[Any, Path, int]]:
    """Yield ``(leaf, path, depth)`` for every leaf reachable from ``obj``, once
    each, depth-first in container order. Iterative, so depth costs no stack;
    lazy, so a search for the first leaf stops there."""
    stack: list[Iterator[tuple[Any, Path, int]]] = [iter([(obj, name, depth)])]
    seen: set[int] = set()
    keep: list[object] = []  # keep visited objects alive so ids stay unique
    while stack:
        for node, path, at in stack[-1]:
            if is_leaf(node):
                # Checked before the seen test: the mapping walk refuses a deep
                # place even when the leaf there was mapped higher up already.
                if reach.strict and at > reach.max_depth:
                    raise _too_deep(path, at, reach.max_depth)
                if id(node) not in seen:
                    seen.add(id(node))
                    keep.append(node)
                    yield node, path, at
                continue
            kind = _kind(node, reach)
            if kind is None or id(node) in seen:
                continue
            seen.add(id(node))
            keep.append(node)
            if not reach.strict and not reach.enters(kind, at):
                continue
            step = reach.attr_step if kind == "object" else 1
            stack.append(_below(node, kind, path, at + step))
            break
        else:
            stack.pop()


def leaves(
    obj: Any, is_leaf: Leaf = is_tensor, reach: Reach = STRICT, *, name: str = "obj"
) -> list[tuple[str, Any]]:
    """``(path, leaf)`` for every leaf in ``obj``, in a stable walk order, each
    once. Raises before returning anything when a strict walk finds one too deep."""
    found = walk(obj, is_leaf, reach, name=name)
    return [(format_path(path), leaf) for leaf, path, _ in found]


def iter_tensors(obj: Any, reach: Reach = STRICT) -> list[torch.Tensor]:
    """Every tensor reachable in ``obj``, in a stable walk order, each once."""
    return [leaf for leaf, _, _ in walk(obj, is_tensor, reach)]


class Mapper:
    """Copy the parts of a structure that lead to a leaf, mapping each leaf.

    Only containers and objects on a path to a leaf are copied; leaf-free
    parts are shared with the original, which spares copying objects that do
    not support it (loggers, open files) and that need no change anyway.
    Copies are registered before their children are visited, so shared and
    circular references come out shared and circular in the copy. Subclasses
    walk a second structure (``other``) alongside.
    """

    memo_leaves = True

    def __init__(
        self, is_leaf: Leaf, reach: Reach, fn: Callable[[Any], Any] | None = None
    ) -> None:
        self.fn = fn
        self.is_leaf = is_leaf
        self.reach = reach
        self.memo: dict[int, Any] = {}
        self.clean: set[int] = set()  # ids of nodes that lead to no leaf
        self.keep: list[object] = []  # originals alive, so ids are not reused

    def on_leaf(self, leaf: Any, other: Any, path: Path) -> Any:
        assert self.fn is not None
        return self.fn(leaf)

    def child(self, other: Any, how: str, key: Any) -> Any:
        """The counterpart in ``other`` of a child (parallel walks only)."""
        return None

    def check(self, node: Any, other: Any, path: Path) -> None:
        """Validate ``other`` against ``node`` (which leads to a leaf)."""

    def first_leaf(self, node: Any, depth: int, path: Path) -> tuple[Path, int] | None:
        if id(node) in self.clean:
            return None
        bound = sys.maxsize if self.reach.strict else self.reach.max_depth
        lenient = replace(self.reach, max_depth=bound, strict=False)
        for _, found, at in walk(node, self.is_leaf, lenient, name=path, depth=depth):
            return found, at
        if self.reach.strict:  # unbounded search: nothing below leads anywhere
            self.clean.add(id(node))
        return None

    def visit(self, node: Any, other: Any, depth: int, path: Path) -> Any:
        if self.is_leaf(node):
            if not self.memo_leaves:
                return self.on_leaf(node, other, path)
            if id(node) not in self.memo:
                self.keep.append(node)
                self.memo[id(node)] = self.on_leaf(node, other, path)
            return self.memo[id(node)]
        kind = _kind(node, self.reach)
        if kind is None:
            return node
        if id(node) in self.memo:
            return self.memo[id(node)]
        found = self.first_leaf(node, depth, path)
        if found is None:
            return node
        if self.reach.strict and depth >= self.reach.max_depth:
            raise _too_deep(found[0], found[1], self.reach.max_depth)
        if not self.reach.strict and not self.reach.enters(kind, depth):
            return node
        self.check(node, other, path)
        self.keep.append(node)
        children = list(_children(node, kind))
        step = self.reach.attr_step if kind == "object" else 1

        memo, memo_leaves, is_leaf = self.memo, self.memo_leaves, self.is_leaf

        def mapped(how: str, key: Any, value: Any) -> Any:
            # Leaves and atoms are handled here rather than in visit(): most
            # children are one or the other, and a call less each is felt.
            if type(value) in _ATOMS:
                return value
            counterpart = None if other is None else self.child(other, how, key)
            if not is_leaf(value):
                return self.visit(value, counterpart, depth + step, (path, how, key))
            if not memo_leaves:
                return self.on_leaf(value, counterpart, (path, how, key))
            if id(value) not in memo:
                self.keep.append(value)
                memo[id(value)] = self.on_leaf(value, counterpart, (path, how, key))
            return memo[id(value)]

        if kind == "tuple" or (kind == "set" and isinstance(node, frozenset)):
            items = [mapped(*c) for c in children]
            if id(node) in self.memo:  # a cycle through it already built it
                return self.memo[id(node)]
            new_frozen = _rebuild(node, items)
            self.memo[id(node)] = new_frozen
            return new_frozen
        new = copy.copy(node)
        self.memo[id(node)] = new
        if kind == "list":
            new[:] = [mapped(*c) for c in children]
        elif kind == "set":
            new.clear()
            new.update(mapped(*c) for c in children)
        elif kind == "dict":
            for c in children:
                new[c[1]] = mapped(*c)
        else:
            for c in children:
                # object.__setattr__ also works on frozen dataclasses.
                object.__setattr__(new, c[1], mapped(*c))
        return new


def _rebuild(original: Any, items: list[Any]) -> Any:
    if type(original) in (tuple, frozenset):
        return type(original)(items)
    if hasattr(original, "_make"):  # namedtuple: positional constructor
        return type(original)(*items)
    return type(original)(items)


def map_leaves(
    obj: Any, fn: Callable[[Any], Any], is_leaf: Leaf = is_tensor, reach: Reach = STRICT
) -> Any:
    """A copy of ``obj`` with every leaf replaced by ``fn(leaf)``.

    ``fn`` is called once per distinct leaf; a leaf reached twice is the same
    mapped value in both places. Leaf-free parts are shared with ``obj``.
    """
    return Mapper(is_leaf, reach, fn).visit(obj, None, 0, "obj")
