"""Tests for per-client RNG suites, their state and seed derivation."""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from blazefl import ConfigurationError
from blazefl.reproducibility import (
    RNGSuite,
    RNGSuiteState,
    create_client_rng_suite,
    create_rng_suite,
    derive_seed,
)


def draw(suite: RNGSuite) -> tuple[list[int], list[int], list[int]]:
    """Draw a few values from each CPU stream of ``suite``."""
    python = [suite.python.getrandbits(64) for _ in range(4)]
    numpy = suite.numpy.integers(0, 2**62, size=4).tolist()
    torch_values = torch.randint(0, 2**62, (4,), generator=suite.torch_cpu).tolist()
    return python, numpy, torch_values


def test_same_seed_gives_same_streams() -> None:
    """Two suites created from one seed draw identical values on every stream."""
    assert draw(create_rng_suite(7)) == draw(create_rng_suite(7))


def test_different_seeds_give_different_streams() -> None:
    """Suites from different seeds differ on every stream."""
    first, second = draw(create_rng_suite(7)), draw(create_rng_suite(8))
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_suites_are_independent() -> None:
    """Drawing from one suite does not move another suite's streams."""
    reference = draw(create_rng_suite(3))
    busy, quiet = create_rng_suite(3), create_rng_suite(3)
    draw(busy)
    assert draw(quiet) == reference


def test_suite_does_not_touch_global_generators() -> None:
    """Drawing from a suite leaves the process-wide generators where they were."""
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    draw(create_rng_suite(5))
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_create_rng_suite_matches_plain_seeding() -> None:
    """create_rng_suite(seed) seeds each generator with the seed itself."""
    suite = create_rng_suite(42)
    assert suite.python.random() == random.Random(42).random()
    assert suite.numpy.random() == np.random.default_rng(42).random()
    plain = torch.Generator().manual_seed(42)
    assert torch.equal(
        torch.rand(3, generator=suite.torch_cpu), torch.rand(3, generator=plain)
    )


def test_cuda_generator_only_with_cuda() -> None:
    """The suite has a CUDA generator exactly when CUDA is available."""
    assert (create_rng_suite(0).torch_cuda is not None) == torch.cuda.is_available()


def test_set_state_continues_exact_streams() -> None:
    """Restoring a captured state replays the same draws on every stream."""
    suite = create_rng_suite(11)
    draw(suite)
    state = suite.get_state()
    expected = draw(suite)
    draw(suite)
    suite.set_state(state)
    assert draw(suite) == expected


def test_from_state_continues_exact_streams() -> None:
    """A suite built from a captured state continues the original's streams."""
    suite = create_rng_suite(11)
    draw(suite)
    clone = RNGSuite.from_state(suite.get_state())
    assert draw(clone) == draw(suite)


def test_state_survives_pickle() -> None:
    """A pickled and unpickled state still continues the exact streams."""
    suite = create_rng_suite(12)
    draw(suite)
    state = pickle.loads(pickle.dumps(suite.get_state()))
    assert draw(RNGSuite.from_state(state)) == draw(suite)


def test_state_dict_survives_json() -> None:
    """to_dict output round-trips through JSON and still continues the streams."""
    suite = create_rng_suite(13)
    draw(suite)
    text = json.dumps(suite.get_state().to_dict())
    state = RNGSuiteState.from_dict(json.loads(text))
    assert draw(RNGSuite.from_state(state)) == draw(suite)


def test_state_dict_holds_only_json_types() -> None:
    """to_dict contains only dicts, lists, strs, ints, floats and None."""

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float)

    assert plain(create_rng_suite(0).get_state().to_dict())


def test_state_is_a_snapshot() -> None:
    """A captured state does not change when the suite keeps drawing."""
    suite = create_rng_suite(14)
    state = suite.get_state()
    before = state.to_dict()
    draw(suite)
    assert state.to_dict() == before


def test_state_round_trips_mt19937() -> None:
    """A suite on numpy's MT19937 (array-valued state) restores exactly too."""
    suite = create_rng_suite(15)
    suite.numpy = np.random.Generator(np.random.MT19937(15))
    suite.numpy.random(3)
    state = RNGSuiteState.from_dict(json.loads(json.dumps(suite.get_state().to_dict())))
    assert draw(RNGSuite.from_state(state)) == draw(suite)


def test_from_dict_rejects_malformed_data() -> None:
    """from_dict names the problem when given data that is not a suite state."""
    with pytest.raises(ConfigurationError, match=r"not an RNG suite state"):
        RNGSuiteState.from_dict({"format": 1, "python": [3]})


def test_from_dict_rejects_unknown_format() -> None:
    """from_dict refuses a state written in a format it does not read."""
    data = create_rng_suite(0).get_state().to_dict() | {"format": 99}
    with pytest.raises(ConfigurationError, match=r"unsupported RNG state format 99"):
        RNGSuiteState.from_dict(data)


def test_set_state_rejects_other_bit_generator() -> None:
    """set_state refuses a numpy state from a different bit generator type."""
    suite = create_rng_suite(0)
    other = create_rng_suite(0)
    other.numpy = np.random.Generator(np.random.MT19937(0))
    with pytest.raises(ConfigurationError, match=r"'MT19937'.*'PCG64'"):
        suite.set_state(other.get_state())


def test_client_suite_is_derived_seed_suite() -> None:
    """create_client_rng_suite(seed, cid) equals create_rng_suite(derive_seed(...))."""
    assert draw(create_client_rng_suite(42, 3)) == draw(
        create_rng_suite(derive_seed(42, 3))
    )


def test_client_suites_do_not_collide_across_runs() -> None:
    """Run 42 / client 1 and run 43 / client 0 draw different streams."""
    first, second = (
        draw(create_client_rng_suite(42, 1)),
        draw(create_client_rng_suite(43, 0)),
    )
    assert all(a != b for a, b in zip(first, second, strict=True))


pairs = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))


@given(first=pairs, second=pairs)
def test_distinct_seed_cid_pairs_never_share_a_stream(
    first: tuple[int, int], second: tuple[int, int]
) -> None:
    """Different (seed, cid) pairs give client suites with different streams."""
    assume(first != second)
    a, b = draw(create_client_rng_suite(*first)), draw(create_client_rng_suite(*second))
    assert all(x != y for x, y in zip(a, b, strict=True))


def test_derive_seed_matches_seed_sequence_spawn() -> None:
    """derive_seed(s, i) comes from the stream of SeedSequence(s).spawn(n)[i]."""
    child = np.random.SeedSequence(42).spawn(3)[2]
    expected = int(child.generate_state(1, dtype=np.uint64)[0]) >> 1
    assert derive_seed(42, 2) == expected


def test_derive_seed_is_a_non_negative_63_bit_int() -> None:
    """derive_seed returns an int in [0, 2**63)."""
    values = [derive_seed(seed, cid) for seed in range(5) for cid in range(5)]
    assert all(type(v) is int and 0 <= v < 2**63 for v in values)


def test_derive_seed_key_length_matters() -> None:
    """A longer key names a different stream than its prefix."""
    assert len({derive_seed(1), derive_seed(1, 0), derive_seed(1, 0, 0)}) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1,), r"seed must be in \[0, 2\*\*128\), got -1"),
        ((2**128,), r"seed must be in \[0, 2\*\*128\)"),
        ((1, -5), r"key\[0\] must be in \[0, 2\*\*32\), got -5"),
        ((1, 0, 2**32), r"key\[1\] must be in \[0, 2\*\*32\), got 4294967296"),
        ((1.5,), r"seed must be an int, got 1.5 of type float"),
        ((True,), r"seed must be an int, got True of type bool"),
    ],
)
def test_derive_seed_rejects_bad_input(args: tuple[Any, ...], message: str) -> None:
    """derive_seed raises ConfigurationError naming the offending value."""
    with pytest.raises(ConfigurationError, match=message):
        derive_seed(*args)


def test_configuration_error_is_a_value_error() -> None:
    """Bad seeds can be caught as a plain ValueError."""
    with pytest.raises(ValueError, match=r"seed"):
        create_rng_suite(-1)
