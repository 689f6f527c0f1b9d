"""What machine and software a result was measured on, and where it is written.

`machine_info` is the full record the timing scripts store beside their
numbers (CPUs, interpreter, GIL, torch, blazefl, the commit and whether src/
differed from it, the load average); `run_info` is the short one of the
memory and scale benchmarks. `update_readme` rewrites a marked table in
``benchmarks/README.md``.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import anyio
import torch

import blazefl
from blazefl.sim import gil_enabled

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"


def cpu_model(default: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo, else ``default`` (else
    ``platform.processor()``)."""
    model = (platform.processor() or "") if default is None else default
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def run_info(load_average: bool = False) -> dict[str, Any]:
    """The short machine record of the memory and scale benchmarks: CPUs,
    (the load average,) Python, torch, blazefl, the commit, when."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    if load_average:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return {
        **info,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "blazefl": blazefl.__version__,
        "commit": commit,
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_info() -> dict[str, Any]:
    model = cpu_model()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil_enabled(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blazefl": getattr(blazefl, "__version__", "unknown"),
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else _dist("anyio"),
        "git": _git(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _git() -> dict[str, Any]:
    """The commit measured, and whether src/ differed from it (read-only git)."""
    root = HERE.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", "src")
    return {"commit": commit, "src_modified": None if status is None else bool(status)}


def _dist(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "unknown"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def update_readme(table: str, start: str, end: str) -> None:
    """Replace what lies between the markers ``start`` and ``end`` in README.md."""
    text = README.read_text(encoding="utf-8")
    head, sep, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise SystemExit(f"{README} has no {start} ... {end} markers")
    README.write_text(f"{head}{start}\n{table}{end}{tail}", encoding="utf-8")
