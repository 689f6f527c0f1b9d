"""Suite-wide fixtures."""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator

import pytest
import structlog

# -- anyio: which backends an async test runs under --------------------------

#: Every ``@pytest.mark.anyio`` test runs under both backends, unless it (or its
#: module) is marked ``anyio_backends("asyncio")``: worker processes and Ray
#: behave the same under either, and a second run costs seconds.
ANYIO_BACKENDS = ("asyncio", "trio")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "anyio_backends(*names): the anyio backends to run this async test under "
        "(default: asyncio and trio)",
    )


def _parametrized(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A module with its own anyio_backend fixture, or a test parametrizing it
    # directly, chooses for itself.
    if (
        "anyio_backend" in metafunc.fixturenames
        and not hasattr(metafunc.module, "anyio_backend")
        and not _parametrized(metafunc, "anyio_backend")
    ):
        mark = metafunc.definition.get_closest_marker("anyio_backends")
        backends = mark.args if mark is not None else ANYIO_BACKENDS
        metafunc.parametrize("anyio_backend", backends, indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The anyio backend of this run of an async test (see `ANYIO_BACKENDS`)."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """A test that configures structlog (e.g. an example's main) affects no other."""
    yield
    structlog.reset_defaults()


# -- free-threaded builds: the GIL must stay off for the whole session --------
#
# CPython turns the GIL back on, silently and for the whole process, when an
# extension not marked free-threading-safe is imported (torch.optim imports
# torch._dynamo, which imports triton). Tests would still pass, with threads no
# longer running Python in parallel; this guard fails the session instead.

_FREE_THREADED_BUILD = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
_GIL_FIX = (
    "Fix: uninstall the extension (for triton: `pip uninstall triton`; "
    "scripts/provision-free-threaded.sh does this), or run with PYTHON_GIL=0."
)
# The first test after which the GIL was found on, to point at the culprit.
_gil_came_back_after: list[str] = []


def _gil_guarded() -> bool:
    """On a free-threaded build, unless the GIL was asked for (PYTHON_GIL=1 or
    -X gil=1, both of which set sys.flags.gil)."""
    return _FREE_THREADED_BUILD and getattr(sys.flags, "gil", None) != 1


def _gil_on() -> bool:
    return bool(sys._is_gil_enabled())  # exists on every free-threaded build


def pytest_sessionstart(session: pytest.Session) -> None:
    if _gil_guarded() and _gil_on():
        pytest.exit(
            "free-threaded build, but the GIL is already on when the test "
            "session starts (a pytest plugin imported an extension not marked "
            "free-threading-safe). " + _GIL_FIX,
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # After each phase (setup, call, teardown) of each test.
    if _gil_guarded() and not _gil_came_back_after and _gil_on():
        _gil_came_back_after.append(f"{report.nodeid} ({report.when})")


@pytest.fixture(scope="session", autouse=True)
def _gil_stays_off() -> Iterator[None]:
    """Fail the session if the GIL came back on (at collection or in a test)."""
    if _gil_guarded() and _gil_on():
        pytest.fail(
            "the GIL was re-enabled while collecting the tests (an imported "
            "extension is not marked free-threading-safe). " + _GIL_FIX,
            pytrace=False,
        )
    yield
    if _gil_guarded() and _gil_on():
        where = (
            f" (first seen after {_gil_came_back_after[0]})"
            if _gil_came_back_after
            else ""
        )
        pytest.fail(
            f"the GIL was re-enabled during the test session{where}: an imported "
            "extension is not marked free-threading-safe, and every thread test "
            "after it ran with the GIL. " + _GIL_FIX,
            pytrace=False,
        )
