"""Peak resident memory of one variant, run alone in a forked child.

Kept apart from the timing loop: it forks, so it must run before the parent
builds a workload or starts any executor (see `measure_memory`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness_config import Config
from harness_workload import Workload


@dataclass(frozen=True)
class Memory:
    """Peak resident memory of one variant run alone (all its processes)."""

    variant: str
    peak_rss_mib: float | None
    #: The most processes seen at once (1 + process workers).
    processes: int
    #: RSS of the process when it forked: the interpreter with torch imported.
    base_rss_mib: float | None
    ok: bool


def measure_memory(
    cfg: Config, name: str, make: Callable[[Workload], Any], rounds: int
) -> Memory:
    """Run one variant alone in a forked child and sample its process tree.

    The child inherits the interpreter with torch imported, builds its own
    workload (data set and all), runs ``rounds`` rounds and exits: what a
    fresh run of that variant holds. `procmon.TreeMonitor` sums the RSS of the
    child and every process it starts (process workers, their resource
    tracker). The sampler thread runs here, in the parent, so it steals no
    time from the child's interpreter.

    Call it before this process builds a `Workload` or starts any thread or
    process executor: fork copies only the calling thread, and a child would
    otherwise inherit the parent's shared-memory bookkeeping (torch's file
    descriptor server thread, multiprocessing's resource tracker) half-alive.
    """
    from procmon import TreeMonitor, tree_sample

    base = tree_sample(os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run the variant, then leave without cleanup hooks
        code = 1
        try:
            variant = make(Workload(cfg))
            variant.start()
            try:
                for _ in range(rounds):
                    variant.round()
            finally:
                variant.close()
            code = 0
        except BaseException as exc:  # report, never return into the parent's code
            print(f"memory run of {name} failed: {exc!r}", file=sys.stderr)
        finally:
            os._exit(code)
    with TreeMonitor(root=pid, interval=0.05) as monitor:
        _, status = os.waitpid(pid, 0)
    peak = max((s.rss_mib for s in monitor.samples if s.processes), default=None)
    return Memory(
        variant=name,
        peak_rss_mib=peak,
        processes=max((s.processes for s in monitor.samples), default=0),
        base_rss_mib=None if base is None else base.rss_mib,
        ok=os.waitstatus_to_exitcode(status) == 0,
    )
