"""Tests for the lazily built client suite and the compact pickle of a state."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from blazefl import ConfigurationError
from blazefl.reproducibility import RNGSuite, RNGSuiteState, create_client_rng_suite
from blazefl.reproducibility._lazy import LazyRNGSuite


def advanced_state() -> RNGSuiteState:
    """A client state some way into every stream (gauss_next set too)."""
    suite = create_client_rng_suite(11, 3)
    suite.python.gauss(0.0, 1.0)
    suite.numpy.random(5)
    torch.rand(7, generator=suite.torch_cpu)
    return suite.get_state()


def draw_all(suite: RNGSuite) -> tuple[list[float], list[float], list[float]]:
    return (
        [suite.python.gauss(0.0, 1.0) for _ in range(3)],
        suite.numpy.random(3).tolist(),
        torch.rand(3, generator=suite.torch_cpu).tolist(),
    )


def test_lazy_suite_draws_what_from_state_draws() -> None:
    """Every stream of a lazy suite continues exactly like RNGSuite.from_state."""
    state = advanced_state()
    lazy, eager = LazyRNGSuite(state), RNGSuite.from_state(state)
    assert draw_all(lazy) == draw_all(eager)
    assert lazy.get_state() == eager.get_state()


def test_untouched_suite_gives_back_its_state() -> None:
    """A suite nobody drew from returns the very state it was built from."""
    state = advanced_state()
    lazy = LazyRNGSuite(state)
    assert lazy.touched == ()
    assert lazy.get_state() is state


def test_only_touched_generators_are_captured() -> None:
    """Drawing from torch alone captures torch; python and numpy pass through."""
    state = advanced_state()
    lazy, eager = LazyRNGSuite(state), RNGSuite.from_state(state)
    torch.rand(4, generator=lazy.torch_cpu)
    torch.rand(4, generator=eager.torch_cpu)
    after = lazy.get_state()
    assert lazy.touched == ("torch_cpu",)
    assert after.python is state.python
    assert after.numpy is state.numpy
    assert after == eager.get_state()
    assert after.torch_cpu != state.torch_cpu


def test_set_state_moves_a_generator_already_handed_out() -> None:
    """A generator the work holds (a DataLoader's) follows set_state."""
    state = advanced_state()
    lazy = LazyRNGSuite(state)
    held = lazy.torch_cpu
    first = torch.rand(3, generator=held)
    lazy.set_state(state)
    assert torch.equal(torch.rand(3, generator=held), first)
    # ... and an unbuilt one starts from the new state when first touched.
    assert lazy.python.random() == RNGSuite.from_state(state).python.random()


def test_assigned_generator_is_the_one_captured() -> None:
    """Replacing a generator (suite.python = ...) makes its state the suite's."""
    lazy = LazyRNGSuite(advanced_state())
    lazy.python = random.Random(5)
    assert lazy.get_state().python == random.Random(5).getstate()


def test_unknown_bit_generator_is_refused_at_construction() -> None:
    """A state naming a numpy bit generator that does not exist fails early."""
    state = advanced_state()
    bad = RNGSuiteState(
        state.python, {**state.numpy, "bit_generator": "Nope"}, state.torch_cpu
    )
    with pytest.raises(ConfigurationError, match=r"unknown numpy bit generator 'Nope'"):
        LazyRNGSuite(bad)


def test_set_state_refuses_another_bit_generator() -> None:
    """Like RNGSuite.set_state, a state of another numpy bit generator is refused."""
    lazy = LazyRNGSuite(advanced_state())
    other = RNGSuite(
        random.Random(0), np.random.Generator(np.random.MT19937(0)), torch.Generator()
    ).get_state()
    with pytest.raises(
        ConfigurationError, match=r"'MT19937' but this suite uses 'PCG64'"
    ):
        lazy.set_state(other)


def test_pickled_lazy_suite_is_the_suite_it_stands_for() -> None:
    """A lazy suite pickled (e.g. into a worker's cache) continues its streams."""
    lazy = LazyRNGSuite(advanced_state())
    lazy.numpy.random(2)
    copy = pickle.loads(pickle.dumps(lazy))
    assert type(copy) is RNGSuite
    assert draw_all(copy) == draw_all(lazy)


def test_state_pickles_compactly_and_exactly() -> None:
    """A pickled state is the same state, the Mersenne Twister as raw words."""
    state = advanced_state()
    data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    assert back == state
    assert back.python[2] == state.python[2] is not None  # gauss_next kept
    # 625 words as 2.5 KB of raw bytes, not 625 pickled ints (3.7 KB).
    fields = (state.python, state.numpy, state.torch_cpu, state.torch_cuda)
    plain = pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(data) < len(plain) - 1000


def test_state_with_out_of_range_words_still_pickles() -> None:
    """A hand-made python state that does not fit 32-bit words pickles as is."""
    state = advanced_state()
    odd = RNGSuiteState((3, (2**40,) * 625, None), state.numpy, state.torch_cpu)
    assert pickle.loads(pickle.dumps(odd)) == odd
