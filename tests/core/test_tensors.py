"""Tests for model (de)serialisation and the shared-memory object walkers."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.core import (
    SHMHandle,
    deserialize_model,
    process_tensors_in_object,
    reconstruct_from_shared_memory,
    serialize_model,
)


def small_model(seed: int) -> torch.nn.Sequential:
    """A model with parameters, float buffers and an integer buffer."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)
    )


def trained(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """Run a few training-mode forwards so BatchNorm buffers move off defaults."""
    model.train()
    for _ in range(3):
        model(torch.randn(8, 4))
    return model


def test_serialize_concatenates_state_dict() -> None:
    """serialize_model is every state_dict tensor flattened, in order."""
    model = trained(small_model(0))
    expected = torch.cat(
        [t.flatten().to(torch.float32) for t in model.state_dict().values()]
    )
    assert torch.equal(serialize_model(model), expected)


def test_serialize_returns_a_copy() -> None:
    """Changing the flat vector does not change the model."""
    model = small_model(0)
    before = serialize_model(model)
    serialize_model(model).zero_()
    assert torch.equal(serialize_model(model), before)


def test_round_trip_restores_every_tensor() -> None:
    """Deserialising one model's vector into another reproduces its state."""
    source, target = trained(small_model(0)), small_model(1)
    deserialize_model(target, serialize_model(source))
    for (name, a), b in zip(
        source.state_dict().items(), target.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
        assert a.dtype == b.dtype, name


def test_round_trip_keeps_integer_buffer_exact() -> None:
    """BatchNorm's integer num_batches_tracked survives the float round trip."""
    source, target = trained(small_model(0)), small_model(1)
    deserialize_model(target, serialize_model(source))
    tracked = target.get_buffer("1.num_batches_tracked")
    assert tracked.dtype == torch.long
    assert tracked.item() == 3


def test_deserialize_writes_into_parameters() -> None:
    """deserialize_model updates the model's own parameters in place."""
    model = small_model(0)
    weight = model.get_parameter("0.weight")
    deserialize_model(model, torch.zeros_like(serialize_model(model)))
    assert model.get_parameter("0.weight") is weight
    assert torch.count_nonzero(weight).item() == 0


def test_deserialize_rejects_wrong_size() -> None:
    """A vector of the wrong length raises, naming both sizes."""
    model = small_model(0)
    size = serialize_model(model).numel()
    with pytest.raises(ConfigurationError, match=rf"shape \({size - 1},\).*{size}"):
        deserialize_model(model, torch.zeros(size - 1))


def test_deserialize_rejects_wrong_size_without_partial_write() -> None:
    """A rejected vector leaves the model untouched."""
    model = small_model(0)
    before = serialize_model(model)
    with pytest.raises(ConfigurationError, match=r"state elements"):
        deserialize_model(model, torch.zeros(before.numel() + 1))
    assert torch.equal(serialize_model(model), before)


@dataclass
class Plain:
    """A mutable dataclass holding a tensor and a label."""

    tensor: torch.Tensor
    label: str = "plain"


@dataclass(frozen=True)
class Frozen:
    """A frozen dataclass holding a tensor and a nested container."""

    tensor: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FrozenSlotted:
    """A frozen slotted dataclass holding a tensor and an int."""

    tensor: torch.Tensor
    count: int = 0


class Pair(NamedTuple):
    """A named tuple of a tensor and a float."""

    tensor: torch.Tensor
    weight: float


def package(seed: int) -> dict[str, Any]:
    """A nested package exercising every supported container kind."""
    gen = torch.Generator().manual_seed(seed)

    def t(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen)

    return {
        "list": [t(2), [t(3), "text"]],
        "tuple": (t(1), 7),
        "named": Pair(t(2), 0.5),
        "plain": Plain(t(2, 2)),
        "frozen": Frozen(t(3), {"inner": t(1)}),
        "slotted": FrozenSlotted(t(4), count=2),
        "meta": {"cid": 3, "note": None},
    }


def tensors_in(obj: Any) -> list[torch.Tensor]:
    """The tensors of a ``package()``-shaped object, in a fixed order."""
    return [
        obj["list"][0],
        obj["list"][1][0],
        obj["tuple"][0],
        obj["named"].tensor,
        obj["plain"].tensor,
        obj["frozen"].tensor,
        obj["frozen"].extra["inner"],
        obj["slotted"].tensor,
    ]


def is_shared(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s storage lives in shared memory (typed wrapper)."""
    return bool(tensor.is_shared())  # type: ignore[no-untyped-call]


def test_move_shares_every_tensor() -> None:
    """mode="move" puts every reachable tensor into shared memory."""
    obj = package(0)
    process_tensors_in_object(obj, "move")
    assert all(is_shared(t) for t in tensors_in(obj))


def test_move_works_in_place() -> None:
    """mode="move" returns the same object with the same tensors."""
    obj = package(0)
    originals = tensors_in(obj)
    assert process_tensors_in_object(obj, "move") is obj
    assert all(a is b for a, b in zip(tensors_in(obj), originals, strict=True))


def test_replace_swaps_tensors_for_handles() -> None:
    """mode="replace" puts an SHMHandle wherever the original had a tensor."""
    handles = process_tensors_in_object(package(0), "replace")
    assert all(isinstance(h, SHMHandle) for h in tensors_in(handles))


def test_replace_keeps_structure_and_leaves() -> None:
    """mode="replace" keeps container types and non-tensor values."""
    handles = process_tensors_in_object(package(0), "replace")
    assert handles["list"][1][1] == "text"
    assert handles["tuple"][1] == 7
    assert isinstance(handles["named"], Pair)
    assert handles["named"].weight == 0.5
    assert isinstance(handles["slotted"], FrozenSlotted)
    assert handles["slotted"].count == 2
    assert handles["meta"] == {"cid": 3, "note": None}


def test_replace_leaves_original_untouched() -> None:
    """mode="replace" copies: the original still holds its tensors."""
    obj = package(0)
    originals = tensors_in(obj)
    process_tensors_in_object(obj, "replace")
    assert all(a is b for a, b in zip(tensors_in(obj), originals, strict=True))


def test_reconstruct_round_trip() -> None:
    """reconstruct puts the shared buffer's tensors where the handles were."""
    buffer = process_tensors_in_object(package(0), "move")
    handles = process_tensors_in_object(package(1), "replace")
    rebuilt = reconstruct_from_shared_memory(handles, buffer)
    assert all(
        a is b for a, b in zip(tensors_in(rebuilt), tensors_in(buffer), strict=True)
    )
    assert rebuilt["slotted"].count == 2
    assert isinstance(rebuilt["frozen"], Frozen)


def test_reconstruct_rejects_mismatched_buffer() -> None:
    """reconstruct names the place where buffer and handles disagree."""
    handles = process_tensors_in_object({"a": [torch.zeros(1)]}, "replace")
    with pytest.raises(ConfigurationError, match=r"obj\['a'\]: expected a list"):
        reconstruct_from_shared_memory(handles, {"a": torch.zeros(1)})


def test_reconstruct_rejects_missing_tensor() -> None:
    """reconstruct names a handle whose place is missing from the buffer."""
    handles = process_tensors_in_object({"a": torch.zeros(1)}, "replace")
    with pytest.raises(ConfigurationError, match=r"obj\['a'\]: .*found nothing"):
        reconstruct_from_shared_memory(handles, {"b": torch.zeros(1)})


def test_reconstruct_keeps_values_absent_from_buffer() -> None:
    """Plain values the buffer skeleton lacks are kept from the handle copy."""
    buffer = {"params": torch.zeros(2)}
    handles = process_tensors_in_object(
        {"params": torch.ones(2), "loss": 0.5}, "replace"
    )
    rebuilt = reconstruct_from_shared_memory(handles, buffer)
    assert rebuilt == {"params": buffer["params"], "loss": 0.5}


def test_replace_shares_tensor_free_parts() -> None:
    """Parts without tensors are shared, so uncopyable objects pass through."""
    logger = logging.getLogger("blazefl.test")
    handles = process_tensors_in_object({"t": torch.zeros(1), "log": logger}, "replace")
    assert handles["log"] is logger


def test_replace_handles_circular_reference() -> None:
    """A self-referencing list is copied once, with the cycle preserved."""
    cyclic: list[Any] = [torch.zeros(1)]
    cyclic.append(cyclic)
    handles = process_tensors_in_object(cyclic, "replace")
    assert isinstance(handles[0], SHMHandle)
    assert handles[1] is handles
    assert handles is not cyclic


def test_move_handles_circular_reference() -> None:
    """mode="move" terminates on a cycle and shares the tensor in it."""
    node = Plain(torch.zeros(2))
    node.label = node  # type: ignore[assignment]
    process_tensors_in_object(node, "move")
    assert is_shared(node.tensor)


def test_reconstruct_handles_circular_reference() -> None:
    """reconstruct rebuilds a cycle through a dict and restores its tensor."""
    buffer: dict[str, Any] = {"t": torch.ones(1)}
    buffer["self"] = buffer
    handles = process_tensors_in_object(buffer, "replace")
    rebuilt = reconstruct_from_shared_memory(handles, buffer)
    assert rebuilt["t"] is buffer["t"]
    assert rebuilt["self"] is rebuilt


def test_shared_tensor_reference_stays_shared() -> None:
    """One container reached twice is copied once in replace mode."""
    inner = [torch.zeros(1)]
    handles = process_tensors_in_object({"a": inner, "b": inner}, "replace")
    assert handles["a"] is handles["b"]


def nested(leaf: Any, levels: int) -> Any:
    """``leaf`` wrapped in ``levels`` one-element lists."""
    for _ in range(levels):
        leaf = [leaf]
    return leaf


def test_move_leaves_tensor_past_max_depth_in_place() -> None:
    """As in BlazeFL, a container at depth >= max_depth is not entered by move."""
    deep = nested(torch.zeros(1), 4)
    shallow = torch.zeros(1)
    process_tensors_in_object([shallow, deep], "move", max_depth=2)
    assert is_shared(shallow)
    assert not is_shared(deep[0][0][0][0])


def test_replace_leaves_tensor_past_max_depth_in_place() -> None:
    """As in BlazeFL, replace returns a container at depth >= max_depth as it is."""
    deep = nested(torch.zeros(1), 4)
    handles = process_tensors_in_object([torch.zeros(1), deep], "replace", max_depth=2)
    assert isinstance(handles[0], SHMHandle)
    assert handles[1][0] is deep[0]
    assert isinstance(handles[1][0][0][0][0], torch.Tensor)


def test_tensor_at_max_depth_is_processed() -> None:
    """A tensor is processed wherever it is reached, max_depth included."""
    handles = process_tensors_in_object(nested(torch.zeros(1), 2), "replace", 2)
    assert isinstance(handles[0][0], SHMHandle)


def test_object_attributes_count_two_levels() -> None:
    """An object's attributes are two levels down, as BlazeFL walks its __dict__."""
    obj = [Plain(torch.zeros(1))]
    assert isinstance(
        process_tensors_in_object(obj, "replace", 2)[0].tensor, torch.Tensor
    )
    assert isinstance(process_tensors_in_object(obj, "replace", 3)[0].tensor, SHMHandle)


def test_tensor_left_in_place_survives_round_trip() -> None:
    """A tensor replace left in place is the handle copy's own after reconstruct."""
    buffer = process_tensors_in_object({"params": torch.zeros(2)}, "move")
    result = {"params": torch.ones(2), "extra": nested(torch.full((1,), 5.0), 12)}
    rebuilt = reconstruct_from_shared_memory(
        process_tensors_in_object(result, "replace"), buffer
    )
    assert rebuilt["params"] is buffer["params"]
    assert nested_leaf(rebuilt["extra"]).tolist() == [5.0]


def nested_leaf(obj: Any) -> Any:
    """The innermost element of one-element lists."""
    while isinstance(obj, list):
        (obj,) = obj
    return obj


def test_deep_structure_without_tensors_is_fine() -> None:
    """Nesting past max_depth is allowed when it holds no tensors."""
    deep: Any = "leaf"
    for _ in range(4):
        deep = [deep]
    assert process_tensors_in_object(deep, "replace", max_depth=2) == deep


def test_bad_mode_raises() -> None:
    """An unknown mode raises, naming it and the allowed modes."""
    with pytest.raises(ConfigurationError, match=r"'move', 'replace', got 'copy'"):
        process_tensors_in_object([], "copy")  # type: ignore[arg-type]


def write_result_into(shm_buffer: dict[str, Any]) -> dict[str, Any]:
    """Worker body run in a child process: fill the shared buffer, return handles."""
    result = {"params": torch.full((3,), 7.0), "data_size": 5}
    shm_buffer["params"].copy_(result["params"])
    handles: dict[str, Any] = process_tensors_in_object(result, "replace")
    return handles


def test_shared_buffer_carries_result_across_processes() -> None:
    """A spawned worker's writes reach the parent through a moved buffer."""
    buffer = process_tensors_in_object({"params": torch.zeros(3)}, "move")
    # An executor (unlike Pool) fails instead of hanging if the child dies.
    context = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        handles = pool.submit(write_result_into, buffer).result(timeout=60)
    rebuilt = reconstruct_from_shared_memory(handles, buffer)
    assert isinstance(handles["params"], SHMHandle)
    assert rebuilt["params"].tolist() == [7.0, 7.0, 7.0]
    assert rebuilt["data_size"] == 5
