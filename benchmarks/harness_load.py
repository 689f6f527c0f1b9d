"""How busy the rest of the machine was while a benchmark timed its rounds.

The timing scripts run on shared machines; `LoadMonitor` lets them keep only
the round-robin cycles that other processes left (nearly) alone, `QUIET`
being the share of all CPUs that still counts as alone. Linux /proc only:
elsewhere it measures nothing and says so (None).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: A round-robin cycle is "quiet" when other processes used at most this share
#: of all CPUs while it ran.
QUIET = 0.10


class LoadMonitor:
    """How much CPU other processes took: /proc/stat minus this process tree.

    The benchmark's numbers are only as good as the machine is quiet; this
    records, per round-robin cycle, the share of all CPUs that processes other
    than this one and its children (the process workers) used.
    """

    def __init__(self) -> None:
        self.ok = Path("/proc/stat").exists()
        self.hz = os.sysconf("SC_CLK_TCK") if self.ok else 100
        self.cpus = len(os.sched_getaffinity(0)) if self.ok else 1

    @staticmethod
    def _busy() -> int:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # user nice system idle iowait irq softirq steal ...: all but idle+iowait
        ticks = [int(x) for x in fields[:8]]
        return sum(ticks) - ticks[3] - ticks[4]

    @staticmethod
    def _tree(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0
        rest = stat.rsplit(")", 1)[1].split()
        # utime, stime, and cutime, cstime: the time of children that exited
        # and were waited for (a finished child run still counts as ours).
        total = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                kids = children.read_text().split()
            except OSError:
                continue
            total += sum(LoadMonitor._tree(int(k)) for k in kids)
        return total

    def sample(self) -> tuple[float, int, int] | None:
        if not self.ok:
            return None
        return time.perf_counter(), self._busy(), self._tree(os.getpid())

    def foreign(
        self, a: tuple[float, int, int] | None, b: tuple[float, int, int] | None
    ) -> float | None:
        if a is None or b is None or b[0] <= a[0]:
            return None
        other = (b[1] - a[1]) - (b[2] - a[2])
        return max(0.0, other / ((b[0] - a[0]) * self.hz * self.cpus))
