"""Tests for `build_model`: seeded weights, global stream untouched, threads."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from blazefl.core import serialize_model
from blazefl.models import ModelZoo, build_model

ZOO = ModelZoo(input_shape=(1, 12, 12), num_classes=10)


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Let threads interleave every few bytecodes, as free-threading would."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def test_seeded_weights_depend_on_the_seed_alone() -> None:
    """The same seed gives the same weights; the global stream is untouched."""
    before = torch.random.get_rng_state()
    a = serialize_model(build_model(ZOO, "mlp", 5))
    b = serialize_model(build_model(ZOO, "mlp", 5))
    assert torch.equal(a, b)
    assert not torch.equal(a, serialize_model(build_model(ZOO, "mlp", 6)))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.usefixtures("switch_often")
def test_threads_building_at_once_get_their_own_seeds_weights() -> None:
    """Models built in 4 threads at once, seeded or not, keep each seed's weights
    (DS-FL's thread workers build their clients' first models this way)."""
    seeds = list(range(40))
    expected = [serialize_model(build_model(ZOO, "cnn", s)) for s in seeds]

    def build(seed: int) -> torch.Tensor:
        build_model(ZOO, "cnn")  # an unseeded build in between moves the stream
        return serialize_model(build_model(ZOO, "cnn", seed))

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(build, seeds))
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
