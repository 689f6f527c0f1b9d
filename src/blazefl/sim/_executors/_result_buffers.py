"""Pre-allocated shared-memory result buffers for process workers.

The parent allocates shared byte buffers (`_result_pool`); a worker maps each
one once and, for each client, writes its result tensors into the buffer the
parent named for that client (one copy), sending back only a light skeleton in
which each tensor is a `SlotRef` (offset, dtype, shape). The parent rebuilds
the result as views into that buffer (no copy), which no worker writes into
again while they live. When a result does not fit, its
tensors travel through torch's own shared-memory pickling instead and the
parent grows the buffers for the next clients, so the fallback costs one
client's copy, never correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from blazefl._tree import leaves, map_leaves

__all__ = ["SlotRef", "allocate_slot", "pack_result", "tensor_bytes", "unpack_result"]

_ALIGN = 64


@dataclass(frozen=True, slots=True, eq=False)
class SlotRef:
    """Where one result tensor lies inside a result buffer.

    Compared by identity: two empty tensors share an offset but stay two
    tensors. ``parameter`` remembers an ``nn.Parameter`` (a module inside a
    result is walked into, so its parameters come back as parameters).
    """

    offset: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    parameter: bool = False
    requires_grad: bool = False


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _packable(x: Any) -> bool:
    # A meta tensor holds no data to copy: it travels pickled (shape and dtype
    # only) and the coordinator's NaN check refuses it.
    return isinstance(x, torch.Tensor) and not x.is_meta


def tensor_bytes(obj: Any) -> int:
    """Bytes a buffer needs to hold every tensor in ``obj`` (with alignment)."""
    return sum(
        _aligned(t.numel() * t.element_size()) for _, t in leaves(obj, _packable)
    )


def allocate_slot(nbytes: int) -> torch.Tensor:
    """A new shared-memory byte buffer of at least ``nbytes``."""
    buffer = torch.empty(max(_aligned(nbytes), _ALIGN), dtype=torch.uint8)
    buffer.share_memory_()  # type: ignore[no-untyped-call]
    return buffer


def pack_result(result: Any, buffer: torch.Tensor | None) -> tuple[Any, int, bool]:
    """Write ``result``'s tensors into ``buffer``; return (skeleton, bytes, packed).

    When ``buffer`` is missing or too small, ``result`` is returned unchanged
    (its tensors then travel through torch's shared-memory pickling).
    """
    needed = tensor_bytes(result)
    if buffer is None or needed > buffer.numel():
        return result, needed, False
    offset = 0

    # The walker maps a tensor reached under two names once, so it is packed
    # (and rebuilt) once and stays shared.
    def place(t: torch.Tensor) -> SlotRef:
        nonlocal offset
        src = t.detach().to("cpu").contiguous()
        nbytes = src.numel() * src.element_size()
        if nbytes:
            buffer[offset : offset + nbytes].copy_(src.reshape(-1).view(torch.uint8))
        is_param = isinstance(t, torch.nn.Parameter)
        ref = SlotRef(
            offset, src.dtype, tuple(src.shape), is_param, is_param and t.requires_grad
        )
        offset += _aligned(nbytes)
        return ref

    return map_leaves(result, place, _packable), needed, True


def unpack_result(
    skeleton: Any, buffer: torch.Tensor | None, *, copy: bool = True
) -> Any:
    """Rebuild a packed result, copying its tensors out of the buffer.

    ``copy=False``: the tensors are views into ``buffer``, for a caller that
    never lets a worker write into it while they live (`_result_pool`).
    """
    if buffer is None:
        return skeleton

    def take(ref: SlotRef) -> torch.Tensor:
        nbytes = _numel(ref.shape) * _itemsize(ref.dtype)
        raw = buffer[ref.offset : ref.offset + nbytes]
        tensor = raw.view(ref.dtype).reshape(ref.shape)
        if copy:
            tensor = tensor.clone()
        if ref.parameter:
            return torch.nn.Parameter(tensor, requires_grad=ref.requires_grad)
        return tensor

    return map_leaves(skeleton, take, is_leaf=lambda x: isinstance(x, SlotRef))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _itemsize(dtype: torch.dtype) -> int:
    return dtype.itemsize
