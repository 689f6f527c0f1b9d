"""Leak checks shared by the test suites: processes and shared memory, read
from /proc and /dev/shm (no mocks, no psutil)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from pathlib import Path

SHM_PREFIXES = ("torch_", "psm_", "sem.mp-")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def shm_mapped_by(pids: Iterable[int]) -> set[str]:
    """The /dev/shm names (torch_*, psm_*, sem.mp-*) these processes have mapped.

    Named semaphores (worker stop flags) are mapped by name in the workers, so
    this attributes entries to one run even while other programs on the
    machine create and remove their own.
    """
    names: set[str] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            if "/dev/shm/" in line:
                name = line.split("/dev/shm/", 1)[1].removesuffix(" (deleted)")
                if name.startswith(SHM_PREFIXES):
                    names.add(name)
    return names


def shm_entries() -> set[str]:
    """Every torch_*, psm_* and sem.mp-* entry in /dev/shm now."""
    return {n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIXES)}


def shm_left(names: set[str]) -> set[str]:
    """Which of ``names`` still exist in /dev/shm once garbage is collected."""
    gc.collect()
    return names & set(os.listdir("/dev/shm"))
