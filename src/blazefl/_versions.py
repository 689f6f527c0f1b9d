"""When workers must see the client work again: versions of work and data.

Thread and inline workers share the user's objects in memory, so they always
see the current data set. Process workers and Ray actors get a *copy* of the
client work (data set included) when they start; BlazeFL 3.0 sends it with
every task instead, so a data set with per-round state (a curriculum, a
round-dependent order, `set_dataset` between rounds) must reach them again.

An object declares when it changes with ``__blazefl_version__()``: any
hashable value that changes whenever workers must get the object again, and
stays equal while they need not. `version_of` reads it:

- a declared version is taken as it is (the built-in data sets change only
  through ``set_dataset``; `FederatedClient` and the FedAvg client work
  declare their data set's version);
- a plain function has no state: always the same version;
- any other object declares nothing, so it gets a new version every time it is
  asked, and is sent again every round, as BlazeFL does.

Executors that copy the work compare versions once per round and re-send only
when the version changed, so static work (every built-in one) is sent once.
"""

from __future__ import annotations

import types
from collections.abc import Hashable
from typing import Any

__all__ = ["STATIC", "version_of"]

#: The version of an object that never changes.
STATIC: Hashable = "static"

# Functions carry no data of their own; a partial does (its arguments), so it
# is treated like any other object.
_STATELESS = (types.FunctionType, types.BuiltinFunctionType)


def version_of(obj: Any) -> Hashable:
    """The object's version as workers see it (see the module docstring)."""
    declared = getattr(obj, "__blazefl_version__", None)
    if callable(declared) and not isinstance(obj, type):
        return declared()  # type: ignore[no-any-return]
    if isinstance(obj, _STATELESS):
        return STATIC
    return object()  # undeclared state: new every time, so always re-sent
