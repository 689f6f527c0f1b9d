"""The one tensor walker (blazefl._tree) and the codecs built on it."""

from __future__ import annotations

import enum
import functools
import logging
import pickle
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
import torch

from blazefl import ConfigurationError
from blazefl._shared_tensors import (
    SHMHandle,
    rebuild_from_handles,
    replace_with_handles,
    share_tensors,
)
from blazefl._tree import MAX_DEPTH, Reach, iter_tensors, leaves, map_leaves
from blazefl.sim._context import _pack, _rebuild_state
from blazefl.sim._executors._result_buffers import (
    allocate_slot,
    pack_result,
    tensor_bytes,
    unpack_result,
)


class Pair(NamedTuple):
    tensor: torch.Tensor
    weight: float


@dataclass
class Plain:
    tensor: torch.Tensor
    label: str = "plain"


@dataclass(frozen=True)
class Frozen:
    tensor: torch.Tensor


@dataclass(frozen=True, slots=True)
class FrozenSlotted:
    tensor: torch.Tensor
    count: int = 0


class Bag:
    """A plain object with a ``__dict__``."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class Slotted:
    """A ``__slots__`` class, one slot name-mangled, one slot left unset."""

    __slots__ = ("__hidden", "tensor", "unset")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.__hidden = tensor * 2

    def hidden(self) -> torch.Tensor:
        return self.__hidden


class Colour(enum.Enum):
    RED = 1


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values)


def module() -> torch.nn.Module:
    """A module with a parameter, a buffer and a submodule."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.5)
    return net


# Every container kind the walker enters, each holding tensors: (name, build).
KINDS: list[tuple[str, Callable[[], Any]]] = [
    ("dict", lambda: {"a": t(1.0), "b": [t(2.0)]}),
    ("ordered-dict", lambda: OrderedDict(a=t(1.0))),
    ("defaultdict", lambda: defaultdict(list, a=t(1.0))),
    ("list", lambda: [t(1.0), "text", [t(2.0)]]),
    ("tuple", lambda: (t(1.0), 7)),
    ("named-tuple", lambda: Pair(t(1.0), 0.5)),
    ("set", lambda: {t(1.0)}),
    ("frozenset", lambda: frozenset({t(1.0)})),
    ("dataclass", lambda: Plain(t(1.0))),
    ("frozen-dataclass", lambda: Frozen(t(1.0))),
    ("slotted-dataclass", lambda: FrozenSlotted(t(1.0), count=2)),
    ("object", lambda: Bag(t(1.0))),
    ("slots", lambda: Slotted(t(1.0))),
    ("module", module),
]


class Marked:
    """What the mapping test puts in place of a tensor (hashed by identity)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def same_tensors(a: Any, b: Any) -> bool:
    """Same container type and the same tensor values, in walk order."""
    ta, tb = iter_tensors(a), iter_tensors(b)
    return (
        type(a) is type(b)
        and len(ta) == len(tb)
        and all(torch.equal(x, y) for x, y in zip(ta, tb, strict=True))
    )


@pytest.mark.parametrize(("kind", "build"), KINDS, ids=[k for k, _ in KINDS])
def test_map_reaches_every_tensor_of_every_kind(
    kind: str, build: Callable[[], Any]
) -> None:
    """map_leaves maps each tensor once, keeps the type, leaves the original be."""
    obj = build()
    found = iter_tensors(obj)
    assert found, kind
    mapped = map_leaves(obj, Marked)
    assert type(mapped) is type(obj)
    marks = [m for _, m in leaves(mapped, lambda x: isinstance(x, Marked))]
    assert [m.tensor for m in marks] == found
    assert iter_tensors(obj) == found


def test_module_parameters_and_buffers_are_seen() -> None:
    """A module's parameters and buffers (of its submodules too) are tensors
    the walker sees, under their attribute paths."""
    net = module()
    paths = {path for path, _ in leaves({"model": net})}
    assert "obj['model']._modules['0']._parameters['weight']" in paths
    assert "obj['model']._modules['1']._buffers['running_var']" in paths
    assert len(paths) == len(net.state_dict())


def test_slots_are_seen_mangled_and_unset() -> None:
    """A slotted object's set slots are walked (mangled names too), unset ones
    are skipped."""
    obj = Slotted(t(1.0))
    assert {p for p, _ in leaves(obj)} == {"obj.tensor", "obj._Slotted__hidden"}


def test_cycle_is_walked_once_and_kept_in_the_copy() -> None:
    """A cycle through a dict and an object terminates and survives mapping."""
    bag = Bag(t(1.0))
    node: dict[str, Any] = {"bag": bag}
    bag.back = node  # type: ignore[attr-defined]
    assert len(iter_tensors(node)) == 1
    mapped = map_leaves(node, Marked)
    assert mapped["bag"].back is mapped
    assert mapped is not node


def test_aliased_tensor_is_mapped_once_and_stays_shared() -> None:
    """One tensor reached twice is mapped once and is one value in the copy."""
    shared = t(1.0)
    calls: list[torch.Tensor] = []

    def fn(x: torch.Tensor) -> Marked:
        calls.append(x)
        return Marked(x)

    mapped = map_leaves({"a": shared, "b": (shared,), "c": Bag(shared)}, fn)
    assert calls == [shared]
    assert mapped["a"] is mapped["b"][0] is mapped["c"].tensor


def test_aliased_container_is_copied_once() -> None:
    """One container reached twice is one container in the copy."""
    inner = [t(1.0)]
    mapped = map_leaves({"a": inner, "b": inner}, Marked)
    assert mapped["a"] is mapped["b"]


OPAQUE: list[tuple[str, Any]] = [
    ("class", type("Holder", (), {"weights": t(1.0)})),
    ("module", torch.nn.init),
    ("function", t),
    ("enum", Colour.RED),
    ("partial", functools.partial(torch.add, t(1.0))),
]


@pytest.mark.parametrize(("kind", "leaf"), OPAQUE, ids=[k for k, _ in OPAQUE])
def test_opaque_things_are_left_alone(kind: str, leaf: Any) -> None:
    """Classes, modules, functions, enums and partials are kept as they are,
    even where they hold a tensor."""
    obj = {"x": leaf, "t": t(1.0)}
    assert len(iter_tensors(obj)) == 1
    assert map_leaves(obj, Marked)["x"] is leaf


def test_tensor_free_parts_are_shared() -> None:
    """Parts without tensors are not copied, so uncopyable objects pass through."""
    logger = logging.getLogger("blazefl.test")
    config = {"lr": 0.1}
    mapped = map_leaves({"t": t(1.0), "log": logger, "config": config}, Marked)
    assert mapped["log"] is logger
    assert mapped["config"] is config


def test_tensor_past_the_limit_raises_naming_path_and_limit() -> None:
    """A tensor nested past max_depth raises, saying where, the limit and what
    to do; it is never skipped."""
    deep: Any = t(1.0)
    for _ in range(4):
        deep = {"k": deep}
    message = (
        r"tensor at obj\['k'\]\['k'\]\['k'\]\['k'\] is nested 4 levels deep, past "
        r"the limit of 3; keep tensors at most 3 containers deep"
    )
    with pytest.raises(ConfigurationError, match=message):
        iter_tensors(deep, Reach(max_depth=3))
    with pytest.raises(ConfigurationError, match=message):
        map_leaves(deep, Marked, reach=Reach(max_depth=3))
    assert len(iter_tensors(deep, Reach(max_depth=4))) == 1


def test_default_limit_is_max_depth() -> None:
    """The internal walks take MAX_DEPTH levels and refuse one more."""
    deep: Any = t(1.0)
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert len(iter_tensors(deep)) == 1
    assert len(iter_tensors(map_leaves(deep, torch.clone))) == 1
    with pytest.raises(ConfigurationError, match=rf"past the limit of {MAX_DEPTH}"):
        iter_tensors([deep])


def test_deep_aliased_place_raises_in_every_walk() -> None:
    """A tensor seen high up and again past the limit is refused by the
    looking walk and the copying walk alike."""
    shared = t(1.0)
    obj = [shared, [[[[shared]]]]]
    with pytest.raises(ConfigurationError, match=r"obj\[1\]\[0\]\[0\]\[0\]\[0\]"):
        iter_tensors(obj, Reach(max_depth=3))
    with pytest.raises(ConfigurationError, match=r"obj\[1\]\[0\]\[0\]\[0\]\[0\]"):
        map_leaves(obj, Marked, reach=Reach(max_depth=3))


def test_deep_structure_without_tensors_is_fine() -> None:
    """Nesting far past the limit is allowed where it holds no tensor."""
    deep: Any = "leaf"
    for _ in range(5 * MAX_DEPTH):
        deep = [deep]
    obj = {"t": t(1.0), "deep": deep}
    assert map_leaves(obj, Marked)["deep"] is deep


def test_lenient_reach_returns_deep_containers_unentered() -> None:
    """BlazeFL's reading: a container at depth >= max_depth is kept as it is."""
    obj = [t(1.0), [[t(2.0)]]]
    assert iter_tensors(obj, Reach.blazefl(2)) == [obj[0]]
    mapped = map_leaves(obj, Marked, reach=Reach.blazefl(2))
    assert mapped[1][0] is obj[1][0]


def test_shared_memory_round_trip() -> None:
    """move, replace and rebuild: the handle copy's places take the buffer's
    shared tensors; a set's tensors stay in place and travel by value."""
    buffer = share_tensors({"p": Plain(t(0.0, 0.0)), "s": FrozenSlotted(t(0.0))})
    assert all(x.is_shared() for x in iter_tensors(buffer))  # type: ignore[no-untyped-call]
    result = {"p": Plain(t(1.0, 2.0)), "s": FrozenSlotted(t(3.0)), "tags": {t(4.0)}}
    handles = replace_with_handles(result)
    assert isinstance(handles["p"].tensor, SHMHandle)
    assert handles["tags"] is result["tags"]
    rebuilt = rebuild_from_handles(pickle.loads(pickle.dumps(handles)), buffer)
    assert rebuilt["p"].tensor is buffer["p"].tensor
    assert rebuilt["s"].tensor is buffer["s"].tensor
    assert [x.tolist() for x in rebuilt["tags"]] == [[4.0]]


def test_rebuild_names_the_mismatched_place() -> None:
    """rebuild refuses a buffer that lacks a handle's place, naming it."""
    handles = replace_with_handles({"a": Bag(t(1.0))})
    with pytest.raises(ConfigurationError, match=r"obj\['a'\]\.tensor: expected a"):
        rebuild_from_handles(handles, {"a": object()})


def test_share_checks_depth_before_sharing_anything() -> None:
    """share_tensors raises on a too-deep tensor and shares nothing first."""
    first = t(1.0)
    with pytest.raises(ConfigurationError, match=r"past the limit of 1"):
        share_tensors([first, [[t(2.0)]]], Reach(max_depth=1))
    assert not first.is_shared()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(("kind", "build"), KINDS, ids=[k for k, _ in KINDS])
def test_result_buffer_codec_round_trips_every_kind(
    kind: str, build: Callable[[], Any]
) -> None:
    """A process worker's result buffer carries every kind, tensors included."""
    obj = build()
    buffer = allocate_slot(tensor_bytes(obj))
    skeleton, _, packed = pack_result(obj, buffer)
    assert packed
    assert iter_tensors(skeleton) == []
    rebuilt = unpack_result(pickle.loads(pickle.dumps(skeleton)), buffer)
    assert same_tensors(rebuilt, obj)


@pytest.mark.parametrize(("kind", "build"), KINDS, ids=[k for k, _ in KINDS])
def test_client_state_codec_round_trips_every_kind(
    kind: str, build: Callable[[], Any]
) -> None:
    """ClientState data crosses to a process as raw bytes, every kind intact."""
    packed = pickle.loads(pickle.dumps(_pack({"x": build()})))
    assert iter_tensors(packed) == []
    rebuilt = _rebuild_state(None, packed)  # type: ignore[arg-type]
    assert same_tensors(rebuilt.data["x"], build())


def test_result_buffer_keeps_parameters_and_aliasing() -> None:
    """A module's parameters come back as parameters; an aliased tensor and
    two equal empty tensors come back as they went."""
    shared = t(1.0)
    obj = {"net": module(), "a": shared, "b": shared, "e": [t(), t()]}
    buffer = allocate_slot(tensor_bytes(obj))
    skeleton, _, _ = pack_result(obj, buffer)
    rebuilt = unpack_result(pickle.loads(pickle.dumps(skeleton)), buffer)
    weight = rebuilt["net"][0].weight
    assert isinstance(weight, torch.nn.Parameter)
    assert weight.requires_grad
    assert rebuilt["a"] is rebuilt["b"]
    assert rebuilt["e"][0] is not rebuilt["e"][1]


def test_equal_tensors_in_a_set_stay_two_in_client_state() -> None:
    """Two equal tensors in a set are two tensors after the state codec."""
    packed = pickle.loads(pickle.dumps(_pack({"s": {t(1.0), t(1.0)}})))
    assert len(_rebuild_state(None, packed).data["s"]) == 2  # type: ignore[arg-type]


def test_paths_name_items_attributes_and_set_positions() -> None:
    """Paths read like Python: [key] for items, .name for attributes, {i} for
    a set element's position."""
    obj = {"s": {t(1.0)}, "b": [Bag(t(2.0))]}
    assert [p for p, _ in leaves(obj)] == ["obj['s']{0}", "obj['b'][0].tensor"]
