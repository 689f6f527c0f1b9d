"""Leak checks shared by the test suites: processes, threads, file descriptors
and shared memory, read from /proc and /dev/shm (no mocks, no psutil)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    return {child for child, parent in _processes().items() if parent == pid}


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


# -- a whole-process baseline: children, threads, file descriptors, /dev/shm --


def _processes() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants_of(pid: int) -> set[int]:
    """Every live process below ``pid``: children, their children, and so on."""
    parents = _processes()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@dataclass(frozen=True)
class Helpers:
    """multiprocessing's own helpers of this process: the resource tracker,
    the forkserver, and the resource sharer (a thread and a socket that hand
    file descriptors to other processes). Each starts on first use and lives
    until the interpreter exits, by design, so it is no leak of the test that
    happened to start it (the forkserver's children, the workers, are)."""

    pids: frozenset[int]
    threads: frozenset[int]
    fds: frozenset[int]

    @classmethod
    def now(cls) -> Helpers:
        from multiprocessing import forkserver, resource_sharer, resource_tracker

        # Private attributes: multiprocessing has no public way to ask.
        tracker = resource_tracker._resource_tracker
        server = forkserver._forkserver
        sharer = resource_sharer._resource_sharer
        pids = {getattr(tracker, "_pid", None), server._forkserver_pid}
        fds = {getattr(tracker, "_fd", None), server._forkserver_alive_fd}
        threads = set()
        if sharer._thread is not None:
            threads.add(sharer._thread.ident)
            fds.add(sharer._listener._listener._socket.fileno())
        return cls(
            frozenset(p for p in pids if p is not None),
            frozenset(t for t in threads if t is not None),
            frozenset(f for f in fds if f is not None),
        )


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each one points at."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, now closed
            continue
    return fds


def shm_held_by(pids: Iterable[int]) -> set[str]:
    """The /dev/shm entries (torch_*, psm_*, sem.mp-*) these processes map.

    By inode as well as by name: glibc's sem_open creates a semaphore under a
    temporary name and links it to its real one, so its creator's maps show
    ``/dev/shm/sem.XXXXXX (deleted)``, never ``sem.mp-...``.
    """
    pids = set(pids)
    inodes = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            if "/dev/shm/" in line:
                inodes.add(int(line.split()[4]))
    held = shm_mapped_by(pids)
    for name in shm_entries():
        try:
            if os.stat(f"/dev/shm/{name}").st_ino in inodes:
                held.add(name)
        except OSError:  # removed meanwhile
            continue
    return held


def shm_of_this_tree() -> set[str]:
    """The /dev/shm entries held by this process and every process below it."""
    return shm_held_by({os.getpid(), *descendants_of(os.getpid())})


@dataclass(frozen=True)
class Baseline:
    """What this process holds now, to compare with after a test's work.

    /dev/shm is shared with every program on the machine, so a new entry
    counts as a leak only when it is attributed to this test: still mapped by
    this process tree, or one of the names handed to `watch` (taken while
    the work ran) that still exists.
    """

    processes: frozenset[int]
    threads: int
    fds: dict[int, str]
    shm: frozenset[str]
    watched: set[str] = field(default_factory=set)

    @classmethod
    def take(cls) -> Baseline:
        gc.collect()
        helpers = Helpers.now()
        return cls(
            frozenset(descendants_of(os.getpid())),
            _thread_count(helpers),
            {fd: t for fd, t in open_fds().items() if fd not in helpers.fds},
            frozenset(shm_entries()),
        )

    def watch(self) -> None:
        """Remember the /dev/shm names this process tree maps right now."""
        self.watched.update(shm_of_this_tree())

    def leaks(self, within: float = 15.0) -> list[str]:
        """What is still held beyond the baseline once ``within`` seconds passed.

        Polls (collecting garbage each time): worker threads and processes
        take a moment to finish exiting after the work that started them.
        Empty when nothing leaked.
        """
        deadline = time.monotonic() + within
        while True:
            gc.collect()
            found = self._compare()
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def _compare(self) -> list[str]:
        found = []
        helpers = Helpers.now()
        procs = descendants_of(os.getpid()) - self.processes - helpers.pids
        if procs:
            found.append(f"processes {sorted(procs)}")
        if _thread_count(helpers) > self.threads:
            found.append(f"threads {threading.enumerate()} (was {self.threads})")
        fds = {fd: t for fd, t in open_fds().items() if fd not in helpers.fds}
        if len(fds) > len(self.fds):
            new = {fd: t for fd, t in fds.items() if self.fds.get(fd) != t}
            found.append(f"{len(fds)} fds (was {len(self.fds)}), new: {new}")
        new_shm = shm_entries() - self.shm
        ours = new_shm & (self.watched | shm_of_this_tree())
        if ours:
            found.append(f"/dev/shm entries {sorted(ours)}")
        return found


def _thread_count(helpers: Helpers) -> int:
    return sum(t.ident not in helpers.threads for t in threading.enumerate())
