"""One loopback-only Ray instance for the whole tests/ray session.

Ray resolves ``127.0.0.1`` to the machine's routable address unless multi-node
support is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), so that is set before
Ray is imported: every process of every test cluster then binds loopback only.
Usage statistics are off and the clusters use a token made up per session.
The two-node module shuts this instance down for its own cluster;
`ray_local` starts it again for whichever test needs it next.
"""

from __future__ import annotations

import os
import secrets

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

from collections.abc import Iterator
from typing import Any

import pytest


def _ray() -> Any:
    # "ray.exceptions", not "ray": without Ray installed, this very directory
    # would import as a namespace package named ray.
    pytest.importorskip("ray.exceptions")
    import ray

    return ray


@pytest.fixture(scope="session", autouse=True)
def _fakes_by_value() -> None:
    """The fakes' work classes travel by value: Ray workers cannot import them
    (they do not get the test session's sys.path)."""
    _ray()
    import ray_fakes

    import fakes
    import misbehave

    for module in (ray_fakes, fakes, misbehave):
        _ray().cloudpickle.register_pickle_by_value(module)


class LocalRay:
    """Starts the session's Ray instance on demand, shuts it down at the end."""

    def ensure(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                num_cpus=2,
                log_to_driver=False,
            )


@pytest.fixture(scope="session")
def _local_ray() -> Iterator[LocalRay]:
    local = LocalRay()
    yield local
    from ray_fakes import shut_down_local

    leftovers = shut_down_local()
    assert not leftovers, f"Ray processes still running after shutdown: {leftovers}"


@pytest.fixture
def ray_local(_local_ray: LocalRay) -> LocalRay:
    """The session's loopback Ray instance (2 CPUs), started if need be."""
    _local_ray.ensure()
    return _local_ray
