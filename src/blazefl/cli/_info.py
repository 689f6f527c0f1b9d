"""What this machine runs: versions, the Python build, threads, devices."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import multiprocessing
import os
import platform
import subprocess
import sys
import sysconfig
from typing import Any

__all__ = ["executors", "git_commit", "machine_info", "versions"]

_PACKAGES = ("blazefl", "torch", "numpy", "anyio", "structlog")


def versions() -> dict[str, str]:
    """blazefl, Python and the core dependencies, by distribution name."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit() -> dict[str, Any] | None:
    """The git commit of the blazefl source this process imported, and whether
    its tree had uncommitted changes; None outside a git checkout (an
    installed wheel) or without git."""
    import blazefl

    source = os.path.dirname(os.path.abspath(blazefl.__file__))

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", source, *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def executors() -> list[str]:
    """The executors this machine can run (processes need ``spawn``)."""
    names = ["inline", "threads"]
    if "spawn" in multiprocessing.get_all_start_methods():
        names.append("processes")
    if importlib.util.find_spec("ray") is not None:
        names.append("ray")
    return names


def machine_info() -> dict[str, Any]:
    """Everything `blazefl info` prints, as plain data."""
    import torch

    probe = getattr(sys, "_is_gil_enabled", None)
    return {
        **versions(),
        "python_build": sys.version.replace("\n", " "),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": True if probe is None else bool(probe()),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "executors": executors(),
    }
