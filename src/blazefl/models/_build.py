"""Building a model from a `ModelSelector` without side effects on global RNG."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["build_model"]


def build_model(selector: Any, name: Any, seed: int | None = None) -> nn.Module:
    """``selector.select_model(name)``, leaving the global torch RNG untouched.

    With ``seed``, the initial weights are a function of the seed alone (the
    server's initial model); without, they are whatever the forked global
    stream gives (fine for a worker's cached model, which every client
    overwrites from the payload).
    """
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model: nn.Module = selector.select_model(name)
        return model
