"""A client's RNG suite whose generators are built only when the work asks.

The coordinator hands every client of every round its suite, continued from
the client's last `RNGSuiteState`. Building all four generators and capturing
all four states again costs about 0.15 ms per client, most of it Python's
Mersenne Twister (625 ints copied in and out) and numpy's state dicts, even
for work that only shuffles its batches with ``ctx.rng.torch_cpu``. A
`LazyRNGSuite` builds a generator from the state on its first access and, in
`get_state`, captures only the generators that were accessed: the others'
parts of the state are passed on as they are (they are immutable values, and
an unaccessed generator cannot have moved). The streams are exactly those of
`RNGSuite.from_state(state)`: same generators, same states, built later.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.reproducibility._rng import (
    RNGSuite,
    RNGSuiteState,
    _bytes_to_tensor,
    _tensor_to_bytes,
    _to_plain,
)

__all__ = ["LazyRNGSuite"]


def _bit_generator_type(name: object) -> type[np.random.BitGenerator]:
    found = getattr(np.random, str(name), None)
    if isinstance(found, type) and issubclass(found, np.random.BitGenerator):
        return found
    raise ConfigurationError(f"unknown numpy bit generator {name!r} in RNG suite state")


class LazyRNGSuite(RNGSuite):
    """An `RNGSuite` continuing ``state``; each generator is built on first use.

    It is an `RNGSuite` in every respect (attributes, `get_state`,
    `set_state`, equality); only the work of building and capturing a
    generator is skipped for the generators nobody touched.
    """

    def __init__(self, state: RNGSuiteState) -> None:
        # The checks `RNGSuite.from_state` makes, up front and cheaply.
        self._numpy_type = _bit_generator_type(state.numpy.get("bit_generator"))
        if state.torch_cuda is not None and not torch.cuda.is_available():
            raise ConfigurationError(
                "the state holds a CUDA generator state but CUDA is not available here"
            )
        self._state = state
        self._python: random.Random | None = None
        self._numpy: np.random.Generator | None = None
        self._torch_cpu: torch.Generator | None = None
        self._torch_cuda: torch.Generator | None = None

    @property
    def touched(self) -> tuple[str, ...]:
        """The generators built so far (accessed by the work)."""
        built = (self._python, self._numpy, self._torch_cpu, self._torch_cuda)
        names = ("python", "numpy", "torch_cpu", "torch_cuda")
        return tuple(n for n, g in zip(names, built, strict=True) if g is not None)

    # -- the generators, built on first access -------------------------------

    @property
    def python(self) -> random.Random:
        if self._python is None:
            # Random.__new__ seeds from its argument; a cheap seed, then the
            # state (Random(0) would seed twice before being overwritten).
            generator = random.Random.__new__(random.Random, 0)  # type: ignore[call-arg]
            generator.setstate(self._state.python)
            self._python = generator
        return self._python

    @python.setter
    def python(self, value: random.Random) -> None:
        self._python = value

    @property
    def numpy(self) -> np.random.Generator:
        if self._numpy is None:
            bit_generator = self._numpy_type(0)
            bit_generator.state = _to_plain(self._state.numpy)
            self._numpy = np.random.Generator(bit_generator)
        return self._numpy

    @numpy.setter
    def numpy(self, value: np.random.Generator) -> None:
        self._numpy = value
        self._numpy_type = type(value.bit_generator)

    @property
    def torch_cpu(self) -> torch.Generator:
        if self._torch_cpu is None:
            generator = torch.Generator(device="cpu")
            generator.set_state(_bytes_to_tensor(self._state.torch_cpu))
            self._torch_cpu = generator
        return self._torch_cpu

    @torch_cpu.setter
    def torch_cpu(self, value: torch.Generator) -> None:
        self._torch_cpu = value

    @property
    def torch_cuda(self) -> torch.Generator | None:
        if self._torch_cuda is None and self._state.torch_cuda is not None:
            generator = torch.Generator(device="cuda")
            generator.set_state(_bytes_to_tensor(self._state.torch_cuda))
            self._torch_cuda = generator
        return self._torch_cuda

    @torch_cuda.setter
    def torch_cuda(self, value: torch.Generator | None) -> None:
        self._torch_cuda = value
        if value is None:
            # Like a plain suite without a CUDA generator: no CUDA part.
            self._state = RNGSuiteState(
                self._state.python, self._state.numpy, self._state.torch_cpu
            )

    # -- state ----------------------------------------------------------------

    def get_state(self) -> RNGSuiteState:
        """The suite's state: built generators captured, the rest passed on."""
        old = self._state
        if not self.touched:
            return old
        cuda = self._torch_cuda
        return RNGSuiteState(
            python=old.python if self._python is None else self._python.getstate(),
            numpy=(
                old.numpy
                if self._numpy is None
                else _to_plain(self._numpy.bit_generator.state)
            ),
            torch_cpu=(
                old.torch_cpu
                if self._torch_cpu is None
                else _tensor_to_bytes(self._torch_cpu.get_state())
            ),
            torch_cuda=old.torch_cuda
            if cuda is None
            else _tensor_to_bytes(cuda.get_state()),
        )

    def set_state(self, state: RNGSuiteState) -> None:
        """Move every stream to ``state``: built generators now, the rest on use."""
        if state.torch_cuda is not None and self.torch_cuda is None:
            raise ConfigurationError(
                "the state holds a CUDA generator state but this suite has no "
                "torch_cuda generator; restore it where CUDA is available"
            )
        expected = self._numpy_type.__name__
        if state.numpy.get("bit_generator") != expected:
            raise ConfigurationError(
                f"the state's numpy bit generator is "
                f"{state.numpy.get('bit_generator')!r} but this suite uses "
                f"{expected!r}; use RNGSuite.from_state instead"
            )
        cuda = state.torch_cuda if state.torch_cuda is not None else self._cuda_bytes()
        self._state = RNGSuiteState(state.python, state.numpy, state.torch_cpu, cuda)
        if self._python is not None:
            self._python.setstate(state.python)
        if self._numpy is not None:
            self._numpy.bit_generator.state = _to_plain(state.numpy)
        if self._torch_cpu is not None:
            self._torch_cpu.set_state(_bytes_to_tensor(state.torch_cpu))
        if self._torch_cuda is not None and state.torch_cuda is not None:
            self._torch_cuda.set_state(_bytes_to_tensor(state.torch_cuda))

    def _cuda_bytes(self) -> bytes | None:
        # A state without a CUDA part leaves the CUDA stream where it is.
        if self._torch_cuda is not None:
            return _tensor_to_bytes(self._torch_cuda.get_state())
        return self._state.torch_cuda

    def __repr__(self) -> str:
        return f"LazyRNGSuite(touched={self.touched!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (e.g. into a cache) it is the plain suite it stands for.
        return (RNGSuite.from_state, (self.get_state(),))
