"""Tests for process-wide seeding, snapshots and torch thread control."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from blazefl import ConfigurationError
from blazefl.reproducibility import (
    RandomStateSnapshot,
    seed_everything,
    set_torch_threads,
    setup_reproducibility,
    torch_threads,
)


@pytest.fixture(autouse=True)
def preserve_global_state() -> Iterator[None]:
    """Leave globals (generators, env, cuDNN flags, threads) as they were found."""
    hash_seed = os.environ.get("PYTHONHASHSEED")
    python, numpy = random.getstate(), np.random.get_state()
    torch_state = torch.get_rng_state()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    threads = torch.get_num_threads()
    yield
    if hash_seed is None:
        os.environ.pop("PYTHONHASHSEED", None)
    else:
        os.environ["PYTHONHASHSEED"] = hash_seed
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(torch_state)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    torch.set_num_threads(threads)


def global_draws() -> tuple[float, float, list[float]]:
    """Draw from the global python, numpy and torch generators."""
    return random.random(), float(np.random.random()), torch.rand(3).tolist()


def test_setup_reproducibility_sets_switches() -> None:
    """setup_reproducibility sets PYTHONHASHSEED and the cuDNN flags."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    setup_reproducibility(123)
    assert os.environ["PYTHONHASHSEED"] == "123"
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False


def test_seed_everything_reproduces_global_draws() -> None:
    """Seeding twice with one seed reproduces the global draws."""
    seed_everything(9)
    first = global_draws()
    seed_everything(9)
    assert global_draws() == first


def test_seed_everything_differs_by_seed() -> None:
    """Different seeds give different global draws."""
    seed_everything(9)
    first = global_draws()
    seed_everything(10)
    assert all(a != b for a, b in zip(global_draws(), first, strict=True))


def test_seed_everything_rejects_out_of_range_seed() -> None:
    """seed_everything refuses a seed PYTHONHASHSEED cannot hold."""
    with pytest.raises(ConfigurationError, match=r"\[0, 2\*\*32\).*4294967296"):
        seed_everything(2**32)


def test_snapshot_restore_replays_global_draws() -> None:
    """Restoring a snapshot replays the global draws made after the capture."""
    seed_everything(4)
    snapshot = RandomStateSnapshot.capture()
    expected = global_draws()
    global_draws()
    RandomStateSnapshot.restore(snapshot)
    assert global_draws() == expected


def test_snapshot_restores_hash_seed() -> None:
    """Restoring a snapshot puts PYTHONHASHSEED back as captured."""
    os.environ["PYTHONHASHSEED"] = "5"
    snapshot = RandomStateSnapshot.capture()
    os.environ["PYTHONHASHSEED"] = "6"
    RandomStateSnapshot.restore(snapshot)
    assert os.environ["PYTHONHASHSEED"] == "5"


def test_snapshot_restores_unset_hash_seed() -> None:
    """A snapshot taken without PYTHONHASHSEED removes it again on restore."""
    os.environ.pop("PYTHONHASHSEED", None)
    snapshot = RandomStateSnapshot.capture()
    os.environ["PYTHONHASHSEED"] = "6"
    RandomStateSnapshot.restore(snapshot)
    assert "PYTHONHASHSEED" not in os.environ


def test_set_torch_threads_returns_previous_count() -> None:
    """set_torch_threads sets the count and returns the one it replaced."""
    torch.set_num_threads(2)
    assert set_torch_threads(1) == 2
    assert torch.get_num_threads() == 1


def test_set_torch_threads_rejects_zero() -> None:
    """set_torch_threads refuses a count below one, naming it."""
    with pytest.raises(ConfigurationError, match=r"at least 1, got 0"):
        set_torch_threads(0)


def test_torch_threads_restores_on_exit() -> None:
    """torch_threads sets the count inside the block and restores it after."""
    torch.set_num_threads(2)
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_torch_threads_restores_on_error() -> None:
    """torch_threads restores the count when the block raises."""
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match=r"boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
