"""Per-client random number generators: suites, their state, and seed derivation.

A simulation that wants bit-identical results regardless of how clients are
scheduled (which thread or process, in which order) must not let clients draw
from the process-wide generators. Each client instead owns an `RNGSuite`: one
generator per library (python, numpy, torch CPU, torch CUDA), seeded from the
run seed and the client id through `derive_seed`. A suite's `RNGSuiteState` is
plain data, so a client's streams can be checkpointed to JSON and continued
exactly later, possibly in another process.
"""

from __future__ import annotations

import base64
import random
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError

__all__ = [
    "RNGSuite",
    "RNGSuiteState",
    "create_client_rng_suite",
    "create_rng_suite",
    "derive_seed",
]

#: ``random.Random.getstate()``: (version, 625 ints of MT19937 state, gauss_next).
PythonRandomState: TypeAlias = tuple[int, tuple[int, ...], float | None]

# Bounds that keep `derive_seed` injective. numpy's SeedSequence splits every int
# into 32-bit words and pads the entropy to its 4-word pool only when a spawn key
# is present, so a seed above 128 bits, or a key element above 32 bits, could
# spell the same word sequence as a different (seed, key) pair.
_MAX_SEED = 2**128
_MAX_KEY = 2**32
# torch.Generator.manual_seed accepts at most an unsigned 64-bit value.
_MAX_TORCH_SEED = 2**64
_STATE_FORMAT_VERSION = 1
if array("I").itemsize != 4:  # pragma: no cover - no such CPython platform known
    raise ImportError("blazefl needs a 4-byte C unsigned int (array typecode 'I')")


def _check_int(name: str, value: object, upper: int) -> int:
    # bool is an int subclass, but True as a seed is almost surely a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} must be an int, got {value!r} of type {type(value).__name__}"
        )
    if not 0 <= value < upper:
        raise ConfigurationError(
            f"{name} must be in [0, 2**{upper.bit_length() - 1}), got {value!r}; "
            "use a non-negative integer"
        )
    return value


def derive_seed(seed: int, *key: int) -> int:
    """Derive an independent 63-bit seed for the stream named by ``key``.

    Use this whenever a run needs many streams (one per client, per round, ...)
    from a single run seed. It is ``numpy.random.SeedSequence(entropy=seed,
    spawn_key=key)`` reduced to a non-negative 63-bit int, so ``derive_seed(s,
    i)`` seeds the same stream family as ``SeedSequence(s).spawn(n)[i]``.

    Unlike the ``seed + cid`` scheme of BlazeFL 3.0 (where run 42 / client 1 and
    run 43 / client 0 draw the same numbers), distinct ``(seed, *key)`` inputs
    never alias structurally: the hash input is different for every pair, so the
    outputs coincide only by a hash collision (probability about 2**-63 for any
    given pair). For that guarantee ``seed`` must be below 2**128 and each key
    element below 2**32; larger values raise `ConfigurationError`.
    """
    _check_int("seed", seed, _MAX_SEED)
    for position, element in enumerate(key):
        _check_int(f"key[{position}]", element, _MAX_KEY)
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=key)
    # One 64-bit word, top bit dropped: fits torch, numpy and signed int64 columns.
    return int(sequence.generate_state(1, dtype=np.uint64)[0]) >> 1


@dataclass(frozen=True, slots=True)
class RNGSuiteState:
    """The position of every stream of an `RNGSuite`, as plain values.

    Take one with `RNGSuite.get_state` at a checkpoint and hand it to
    `RNGSuite.set_state` or `RNGSuite.from_state` to continue the exact same
    streams. `to_dict` / `from_dict` convert it to and from JSON-ready data.
    Instances hold a dict and are therefore not hashable.
    """

    python: PythonRandomState
    numpy: dict[str, Any]
    torch_cpu: bytes
    torch_cuda: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-serialisable data (torch states in base64)."""
        version, internal, gauss_next = self.python
        return {
            "format": _STATE_FORMAT_VERSION,
            "python": [version, list(internal), gauss_next],
            "numpy": _to_plain(self.numpy),
            "torch_cpu": base64.b64encode(self.torch_cpu).decode("ascii"),
            "torch_cuda": (
                None
                if self.torch_cuda is None
                else base64.b64encode(self.torch_cuda).decode("ascii")
            ),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for every client twice a round by the process executor (the
        # job out, the outcome back): the Mersenne Twister's 625 words as 2.5
        # KB of raw 32-bit words rather than 625 pickled ints (9 KB, ~3x the
        # time either way). Every word fits: 624 state words and an index.
        version, internal, gauss_next = self.python
        try:
            packed = array("I", internal)
        except (OverflowError, TypeError):  # not a state getstate() returned
            return (
                RNGSuiteState,
                (self.python, self.numpy, self.torch_cpu, self.torch_cuda),
            )
        if sys.byteorder == "big":
            packed.byteswap()  # the words travel little-endian
        words = packed.tobytes()
        return (
            _unpickle_state,
            (version, words, gauss_next, self.numpy, self.torch_cpu, self.torch_cuda),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RNGSuiteState:
        """Rebuild a state from the output of `to_dict` (e.g. read back from JSON).

        Raises `ConfigurationError` when ``data`` does not have that shape.
        """
        try:
            if data["format"] != _STATE_FORMAT_VERSION:
                raise ConfigurationError(
                    f"unsupported RNG state format {data['format']!r}; this "
                    f"version of blazefl reads format {_STATE_FORMAT_VERSION}"
                )
            version, internal, gauss_next = data["python"]
            python: PythonRandomState = (
                int(version),
                tuple(int(word) for word in internal),
                None if gauss_next is None else float(gauss_next),
            )
            numpy_state = data["numpy"]
            if not isinstance(numpy_state, Mapping):
                raise TypeError("'numpy' must be a mapping")
            cuda = data["torch_cuda"]
            return cls(
                python=python,
                numpy=_to_plain(dict(numpy_state)),
                torch_cpu=base64.b64decode(data["torch_cpu"], validate=True),
                torch_cuda=(
                    None if cuda is None else base64.b64decode(cuda, validate=True)
                ),
            )
        except ConfigurationError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"not an RNG suite state produced by RNGSuiteState.to_dict: {exc!r}"
            ) from exc


@dataclass
class RNGSuite:
    """One generator per library, owned by one client (or the server).

    Pass ``suite.torch_cpu`` as the ``generator=`` of DataLoaders and torch
    sampling calls, and draw python / numpy randomness from ``suite.python`` and
    ``suite.numpy``, so that nothing depends on the process-wide generators.
    """

    python: random.Random
    numpy: np.random.Generator
    torch_cpu: torch.Generator
    torch_cuda: torch.Generator | None = None

    def get_state(self) -> RNGSuiteState:
        """Capture the position of every stream, e.g. to checkpoint a client."""
        return RNGSuiteState(
            python=self.python.getstate(),
            numpy=_to_plain(self.numpy.bit_generator.state),
            torch_cpu=_tensor_to_bytes(self.torch_cpu.get_state()),
            torch_cuda=(
                None
                if self.torch_cuda is None
                else _tensor_to_bytes(self.torch_cuda.get_state())
            ),
        )

    def set_state(self, state: RNGSuiteState) -> None:
        """Move every stream back to the position recorded in ``state``.

        A state without a CUDA part leaves ``torch_cuda`` untouched (it was
        captured where CUDA was absent, so no CUDA draws need replaying); a
        state with one cannot be applied to a suite without a CUDA generator.
        """
        if state.torch_cuda is not None and self.torch_cuda is None:
            raise ConfigurationError(
                "the state holds a CUDA generator state but this suite has no "
                "torch_cuda generator; restore it where CUDA is available"
            )
        expected = type(self.numpy.bit_generator).__name__
        if state.numpy.get("bit_generator") != expected:
            raise ConfigurationError(
                f"the state's numpy bit generator is "
                f"{state.numpy.get('bit_generator')!r} but this suite uses "
                f"{expected!r}; use RNGSuite.from_state instead"
            )
        self.python.setstate(state.python)
        self.numpy.bit_generator.state = _to_plain(state.numpy)
        self.torch_cpu.set_state(_bytes_to_tensor(state.torch_cpu))
        if self.torch_cuda is not None and state.torch_cuda is not None:
            self.torch_cuda.set_state(_bytes_to_tensor(state.torch_cuda))

    @classmethod
    def from_state(cls, state: RNGSuiteState) -> RNGSuite:
        """Build a fresh suite that continues the streams recorded in ``state``."""
        name = state.numpy.get("bit_generator")
        bit_generator_type = getattr(np.random, str(name), None)
        if not (
            isinstance(bit_generator_type, type)
            and issubclass(bit_generator_type, np.random.BitGenerator)
        ):
            raise ConfigurationError(
                f"unknown numpy bit generator {name!r} in RNG suite state"
            )
        torch_cuda = None
        if state.torch_cuda is not None:
            if not torch.cuda.is_available():
                raise ConfigurationError(
                    "the state holds a CUDA generator state but CUDA is not "
                    "available here"
                )
            torch_cuda = torch.Generator(device="cuda")
        # Fixed seeds: the states are overwritten next, so reading OS entropy
        # to seed them first would be wasted (it is per client per round).
        suite = cls(
            python=random.Random(0),
            numpy=np.random.Generator(bit_generator_type(0)),
            torch_cpu=torch.Generator(device="cpu"),
            torch_cuda=torch_cuda,
        )
        suite.set_state(state)
        return suite


def create_rng_suite(seed: int) -> RNGSuite:
    """Create a suite whose every generator is seeded with ``seed`` itself.

    Use it for the server or for a single stream. For per-client suites use
    `create_client_rng_suite`, which does not collide across runs. The CUDA
    generator is created only when ``torch.cuda.is_available()``.
    """
    _check_int("seed", seed, _MAX_TORCH_SEED)
    torch_cuda = None
    if torch.cuda.is_available():
        torch_cuda = torch.Generator(device="cuda").manual_seed(seed)
    return RNGSuite(
        python=random.Random(seed),
        numpy=np.random.default_rng(seed),
        torch_cpu=torch.Generator(device="cpu").manual_seed(seed),
        torch_cuda=torch_cuda,
    )


def create_client_rng_suite(seed: int, cid: int) -> RNGSuite:
    """Create client ``cid``'s suite for the run seeded with ``seed``.

    Equal to ``create_rng_suite(derive_seed(seed, cid))``. BlazeFL 3.0 seeded
    client suites with ``seed + cid``, so run 42 / client 1 and run 43 / client
    0 drew identical streams; deriving through `derive_seed` gives every
    ``(seed, cid)`` pair its own stream.
    """
    return create_rng_suite(derive_seed(seed, cid))


def _unpickle_state(
    version: int,
    words: bytes,
    gauss_next: float | None,
    numpy_state: dict[str, Any],
    torch_cpu: bytes,
    torch_cuda: bytes | None,
) -> RNGSuiteState:
    internal = array("I")
    internal.frombytes(words)
    if sys.byteorder == "big":
        internal.byteswap()
    return RNGSuiteState(
        (version, tuple(internal), gauss_next), numpy_state, torch_cpu, torch_cuda
    )


def _to_plain(value: Any) -> Any:
    """Copy nested numpy state into ints, floats, strs, lists and dicts only.

    PCG64 states are already plain, but e.g. MT19937 carries an ndarray key,
    which neither JSON nor a frozen snapshot should share with the generator.
    """
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tensor_to_bytes(state: torch.Tensor) -> bytes:
    return state.cpu().numpy().tobytes()


def _bytes_to_tensor(data: bytes) -> torch.Tensor:
    # bytearray: torch.frombuffer warns about read-only buffers such as bytes.
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
