"""Exported names show the public module they are imported from.

A class defined in ``blazefl.sim._simulation`` and exported by ``blazefl.sim``
should read ``blazefl.sim.Simulation`` in reprs, tracebacks, ``help()`` and
pickles, as anyio and trio do for theirs: users never see (or come to depend
on) a private path, and moving an implementation module breaks nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["publish"]


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def publish(namespace: Mapping[str, Any]) -> None:
    """Give every name in the module's ``__all__`` that module's path.

    Call it last in a public ``__init__.py`` as ``publish(globals())``. Only
    objects still carrying a private path are renamed, so a name exported by
    two public modules keeps the first (the more specific, e.g.
    ``blazefl.sim.abc``) whichever imports first.
    """
    module = str(namespace["__name__"])
    for name in namespace.get("__all__", ()):
        if name not in namespace:  # loaded lazily: published when first read
            continue
        value = namespace[name]
        current = getattr(value, "__module__", None)
        if (
            isinstance(current, str)
            and current.startswith("blazefl.")
            and _is_private(current)
        ):
            try:
                value.__module__ = module
            except (AttributeError, TypeError):  # e.g. a builtin-like object
                continue
