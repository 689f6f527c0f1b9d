"""Resource sampling for the benchmarks: RSS, threads and open fds of a process tree.

Linux only (reads ``/proc``); elsewhere every reading is ``None``. One sampler
thread polls the tree rooted at a pid (this process by default, so workers
it spawns are counted) every ``interval`` seconds::

    with TreeMonitor() as mon:
        run_the_workload()
    mon.peak_rss_mib, mon.samples[-1].threads

Shared by `matrix.py`, `scale.py` and `soak.py` so "peak RSS of all the
processes of a run" means the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["Sample", "TreeMonitor", "tree_pids", "tree_sample"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a process tree."""

    t: float  #: seconds since the monitor started
    rss_mib: float  #: resident set size summed over the tree
    threads: int  #: threads summed over the tree
    fds: int  #: open file descriptors summed over the tree
    processes: int  #: processes in the tree
    #: of ``rss_mib``, the shared-memory pages (``RssShmem``): a page that
    #: several processes map counts once in each of them
    shmem_mib: float = 0.0


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (via /proc/<pid>/task/*/children)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in children.read_text().split())
    return out


def tree_sample(root: int, t: float = 0.0) -> Sample | None:
    """Read the tree rooted at ``root`` once (None without /proc)."""
    if not Path(f"/proc/{root}").exists():
        return None
    rss = threads = fds = procs = shmem_kb = 0
    for pid in tree_pids(root):
        try:
            statm = Path(f"/proc/{pid}/statm").read_text().split()
            status = Path(f"/proc/{pid}/status").read_text()
            nfd = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:  # exited between listing and reading
            continue
        rss += int(statm[1]) * _PAGE
        for line in status.splitlines():
            if line.startswith("Threads:"):
                threads += int(line.split()[1])
            elif line.startswith("RssShmem:"):
                shmem_kb += int(line.split()[1])
        fds += nfd
        procs += 1
    return Sample(t, rss / 2**20, threads, fds, procs, shmem_kb / 1024)


class TreeMonitor:
    """Samples a process tree in a background thread while the block runs."""

    def __init__(self, root: int | None = None, interval: float = 0.05) -> None:
        self.root = os.getpid() if root is None else root
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def sample_now(self) -> Sample | None:
        """Take (and keep) one reading from the calling thread."""
        s = tree_sample(self.root, time.perf_counter() - self._t0)
        if s is not None:
            self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_now()

    def __enter__(self) -> TreeMonitor:
        self._t0 = time.perf_counter()
        self.sample_now()
        self._thread = threading.Thread(target=self._loop, name="procmon", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample_now()

    @property
    def peak_rss_mib(self) -> float | None:
        """Highest summed RSS seen (None without /proc)."""
        peak = self.peak
        return None if peak is None else peak.rss_mib

    @property
    def peak(self) -> Sample | None:
        """The reading with the highest summed RSS (None without /proc)."""
        return max(self.samples, key=lambda s: s.rss_mib, default=None)
