"""Process-wide reproducibility switches: global seeds, snapshots, torch threads.

Per-client randomness belongs in an `RNGSuite`; this module covers what is
shared by the whole process: the global python / numpy / torch generators,
cuDNN's algorithm choice, ``PYTHONHASHSEED`` for child processes, and torch's
intra-op thread count (floating-point reductions may split work differently
with a different number of threads).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.reproducibility._rng import PythonRandomState

__all__ = [
    "RandomStateSnapshot",
    "seed_everything",
    "set_torch_threads",
    "setup_reproducibility",
    "torch_threads",
]

# PYTHONHASHSEED and numpy's legacy global seed both accept 32-bit values only.
_MAX_GLOBAL_SEED = 2**32


def _check_global_seed(seed: object) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigurationError(
            f"seed must be an int, got {seed!r} of type {type(seed).__name__}"
        )
    if not 0 <= seed < _MAX_GLOBAL_SEED:
        raise ConfigurationError(
            f"seed must be in [0, 2**32) (the range PYTHONHASHSEED and numpy's "
            f"global seed accept), got {seed!r}"
        )
    return seed


def setup_reproducibility(seed: int) -> None:
    """Make the process deterministic without touching any generator.

    Sets ``PYTHONHASHSEED`` (it only affects processes started afterwards, e.g.
    spawned workers: the running interpreter fixed its hash seed at start-up),
    asks cuDNN for deterministic algorithms and turns off its benchmark mode,
    whose autotuning may pick different kernels from run to run.
    """
    _check_global_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    """Run `setup_reproducibility` and seed the global python, numpy and torch
    (CPU and every CUDA device) generators with ``seed``.

    Call it once at the start of a script, for code that draws from the global
    generators (model initialisation, for one); clients should use their own
    `RNGSuite` instead.
    """
    setup_reproducibility(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # torch.manual_seed already seeds CUDA; explicit so the intent survives.
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass
class RandomStateSnapshot:
    """The process-wide random state, to put back after code that disturbs it.

    ``environ`` is the value of ``PYTHONHASHSEED`` (None when unset), not a copy
    of the whole environment: restoring every variable would undo unrelated
    changes made by other threads in the meantime.
    """

    environ: str | None
    python: PythonRandomState
    numpy: dict[str, Any]
    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] | None

    @classmethod
    def capture(cls) -> RandomStateSnapshot:
        """Record the current global generators and ``PYTHONHASHSEED``."""
        return cls(
            environ=os.environ.get("PYTHONHASHSEED"),
            python=random.getstate(),
            numpy=np.random.get_state(legacy=False),
            torch_cpu=torch.get_rng_state(),
            torch_cuda=(
                torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
            ),
        )

    @staticmethod
    def restore(snapshot: RandomStateSnapshot) -> None:
        """Put the global generators and ``PYTHONHASHSEED`` back as captured."""
        if snapshot.environ is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = snapshot.environ
        random.setstate(snapshot.python)
        np.random.set_state(snapshot.numpy)
        torch.set_rng_state(snapshot.torch_cpu)
        if snapshot.torch_cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(snapshot.torch_cuda)


def set_torch_threads(num_threads: int = 1) -> int:
    """Fix torch's intra-op thread count and return the previous count.

    Call it in each worker process (or once in the main process before starting
    client threads): N clients training in parallel, each using every core,
    oversubscribe the machine, and a fixed count also keeps reductions split the
    same way from run to run. The setting is process-wide, not per thread.
    """
    if not isinstance(num_threads, int) or isinstance(num_threads, bool):
        raise ConfigurationError(
            f"num_threads must be an int, got {num_threads!r} of type "
            f"{type(num_threads).__name__}"
        )
    if num_threads < 1:
        raise ConfigurationError(f"num_threads must be at least 1, got {num_threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    return previous


@contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Use ``num_threads`` intra-op threads inside the block, then restore.

    Like `set_torch_threads`, this is process-wide: do not nest it from several
    threads at once with different counts.
    """
    previous = set_torch_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
