"""``torch``, imported on first use, so the algorithm classes import without it.

The command line reads the algorithms' settings for ``blazefl run --help``,
which must not pay torch's import time; the algorithms' methods touch torch
only once a run is built. Modules use it as::

    if TYPE_CHECKING:
        import torch
    else:
        from blazefl.algorithms._lazy import torch
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["torch"]


class _LazyModule:
    """A stand-in that imports the named module on the first attribute read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


torch: Any = _LazyModule("torch")
