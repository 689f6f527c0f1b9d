"""Building a model from a `ModelSelector` without side effects on global RNG."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

__all__ = ["build_model"]

# The global torch generator is one per process. Two threads inside
# `fork_rng` at once (two thread workers building their clients' first models)
# would seed, draw from and restore it under each other: on free-threaded
# Python, where they truly run at once, a seeded model then got another
# thread's weights. One builder at a time keeps a seed's weights its own.
_GLOBAL_RNG = threading.Lock()


def build_model(selector: Any, name: Any, seed: int | None = None) -> nn.Module:
    """``selector.select_model(name)``, leaving the global torch RNG untouched.

    With ``seed``, the initial weights are a function of the seed alone (the
    server's initial model); without, they are whatever the forked global
    stream gives (fine for a worker's cached model, which every client
    overwrites from the payload). Thread-safe: builds in other threads wait
    (the global stream is shared by the whole process).
    """
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model: nn.Module = selector.select_model(name)
        return model
