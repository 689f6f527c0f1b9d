"""Client work and a handler that show where a round's payload copy lives
(importable by process workers, which unpickle the work by reference)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class PointerWork:
    """Sends back ``payload + 1``; reports the address, version counter and
    first value of the payload copy it got. With ``hoard``, each worker keeps every
    payload it is lent (in ``ctx.cache``) and reports whether the ones it kept
    still hold the values they had."""

    hoard: bool = False

    def __call__(self, ctx: Any, payload: torch.Tensor) -> torch.Tensor:
        ctx.metrics["ptr"] = float(payload.data_ptr())
        ctx.metrics["first"] = float(payload[0])
        ctx.metrics["version"] = float(payload._version)
        if self.hoard:
            kept = ctx.cache.setdefault("kept", [])
            ctx.metrics["kept_intact"] = float(
                all(torch.equal(lent, value) for lent, value in kept)
            )
            kept.append((payload, payload.clone()))
        return payload + 1


class RoundHandler:
    """Sends ``full((1024,), round)`` to clients 0-3 for ``rounds`` rounds."""

    def __init__(self, rounds: int = 3) -> None:
        self.rounds = rounds
        self.round = 0
        self.received = 0

    def sample_clients(self) -> list[int]:
        return [0, 1, 2, 3]

    def downlink_package(self) -> torch.Tensor:
        return torch.full((1024,), float(self.round))

    def load(self, package: torch.Tensor) -> bool:
        self.received += 1
        if self.received % 4:
            return False
        self.round += 1
        return True

    def is_stopped(self) -> bool:
        return self.round >= self.rounds
