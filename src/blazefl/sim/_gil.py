"""Whether the GIL is off, and a warning when an import turns it back on.

On a free-threaded build, thread workers run Python code in parallel only
while the GIL stays off. CPython re-enables it, silently and for the whole
process, when an extension not marked free-threading-safe is imported (the
first ``torch.optim`` optimizer imports triton, which does), so a run checks
after every round and says so once, with the fix.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

__all__ = ["GIL_WARNING", "GilWatch", "gil_enabled"]

GIL_WARNING = (
    "the GIL was re-enabled during the run (an imported extension is not marked "
    "free-threading-safe; torch.optim imports triton, which does this), so thread "
    "workers no longer run Python code in parallel. Fix: run with PYTHON_GIL=0, "
    "or uninstall triton."
)


def gil_enabled() -> bool:
    """Whether the GIL is on right now (always True on a GIL build)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


class GilWatch:
    """Warns once (log line and `RuntimeWarning`) if the GIL came back on."""

    def __init__(self) -> None:
        self.at_start = gil_enabled()
        self._warned = False

    def restart(self) -> bool:
        """Take the GIL's state now as the run's start; return it."""
        self.at_start = gil_enabled()
        return self.at_start

    def check(self, log: Any) -> None:
        if self.at_start or self._warned or not gil_enabled():
            return
        self._warned = True
        log.warning("gil_reenabled", fix=GIL_WARNING)
        warnings.warn(GIL_WARNING, RuntimeWarning, stacklevel=4)
