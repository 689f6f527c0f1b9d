"""A wall-clock stack sampler that says where a round's time goes, by category.

Why sampling and not cProfile alone: on CPython 3.11 a ``cProfile.Profile``
sees only the thread that enabled it, and none of a worker process, while a
round's time is spread over the coordinator's thread, worker threads and
worker processes. `Sampler` wakes every ``interval`` seconds, reads every
thread's Python stack (``sys._current_frames``) and charges the time since its
last wake-up to one category per thread (`classify`), so each thread's
categories add up to the time it was watched, exactly. Torch kernels show up
as the Python frame that called them (they release the GIL; the stack seen is
the caller's). What the sampler itself costs is measured by the caller (a
steady round with and without it).

Worker processes run a sampler of their own (`start_worker_sampler`, started
from the script's top level, which ``spawn`` re-imports in each child as
``__mp_main__``): it records while a marker file exists and writes its totals
to ``worker-<pid>.json`` beside it when the marker goes.

Not a package: the scripts import it from their own directory.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

#: In the order a table lists them; `classify` decides by its own priorities.
CATEGORIES = (
    "local training",
    "data loading / batching",
    "RNG suite restore/capture, client state",
    "serialisation / payload transport",
    "aggregation",
    "server evaluation",
    "coordinator / event loop / scheduling",
    "other",
    "idle (waiting for work or results)",
)
IDLE = CATEGORIES[-1]

# The innermost Python frame of a thread that is blocked (a lock, a queue, a
# selector, a pipe): that thread is waiting, whatever called it.
_IDLE_FRAMES = {
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("threading.py", "acquire"),
    ("queue.py", "get"),
    ("selectors.py", "select"),
    ("connection.py", "_recv"),
    ("connection.py", "_poll"),
    ("connection.py", "poll"),
    ("connection.py", "wait"),
    ("socket.py", "accept"),  # multiprocessing's resource sharer thread
    ("_orphan.py", "watch"),  # a process worker's parent watch (sleeps)
    ("thread.py", "_worker"),  # concurrent.futures: blocked in SimpleQueue.get
    ("_thread_pump.py", "_arrived"),  # the pump's hand-over: SimpleQueue.get
    ("_buffer.py", "_run"),  # the fold thread between uploads: SimpleQueue.get
}

# (category, path fragment, function names or None for any), highest priority
# first: a stack belongs to the first rule that any of its frames matches.
_RULES: tuple[tuple[str, str, frozenset[str] | None], ...] = tuple(
    (cat, frag, frozenset(funcs) if funcs else None)
    for cat, frag, funcs in (
        ("serialisation / payload transport", "blazefl/core/_tensors.py", ()),
        ("serialisation / payload transport", "blazefl/_shared_tensors.py", ()),
        ("serialisation / payload transport", "blazefl/sim/_payload.py", ()),
        ("serialisation / payload transport", "_executors/_result_buffers.py", ()),
        ("serialisation / payload transport", "multiprocessing/reduction.py", ()),
        ("serialisation / payload transport", "multiprocessing/connection.py", ()),
        ("serialisation / payload transport", "torch/multiprocessing/", ()),
        ("serialisation / payload transport", "torch/storage.py", ()),
        ("serialisation / payload transport", "/pickle.py", ()),
        ("serialisation / payload transport", "/copyreg.py", ()),
        ("serialisation / payload transport", "torch/_tensor.py", ("__reduce_ex__",)),
        ("RNG suite restore/capture, client state", "blazefl/reproducibility/", ()),
        ("RNG suite restore/capture, client state", "torch/random.py", ()),
        ("RNG suite restore/capture, client state", "blazefl/sim/_states.py", ()),
        ("RNG suite restore/capture, client state", "blazefl/sim/_disk_states", ()),
        ("aggregation", "blazefl/algorithms/_aggregation.py", ()),
        ("aggregation", "blazefl/algorithms/_fold.py", ()),
        ("aggregation", "blazefl/algorithms/_base.py", ("weighted_average",)),
        (
            "aggregation",
            "blazefl/algorithms/_server.py",
            ("load", "load_round", "global_update", "apply_updates", "load_stale"),
        ),
        ("aggregation", "blazefl/algorithms/_fedavg.py", ("aggregate",)),
        ("aggregation", "blazefl/robust/", ()),
        ("server evaluation", "blazefl/training.py", ("evaluate",)),
        ("server evaluation", "blazefl/algorithms/_server.py", ("get_summary",)),
        ("server evaluation", "blazefl/sim/_evaluate_clients.py", ()),
        ("data loading / batching", "torch/utils/data/", ()),
        ("data loading / batching", "blazefl/data/", ()),
        ("data loading / batching", "blazefl/core/_dataset.py", ()),
        ("data loading / batching", "blazefl/algorithms/_cohort_data.py", ()),
        ("local training", "blazefl/training.py", ()),
        ("local training", "torch/nn/", ()),
        ("local training", "torch/optim/", ()),
        ("local training", "torch/autograd/", ()),
        ("local training", "torch/_tensor.py", ("backward",)),
        ("local training", "torch/_functorch/", ()),
        ("local training", "torch/func", ()),
        ("local training", "blazefl/algorithms/_cohort.py", ()),
        ("local training", "blazefl/algorithms/_cohort_model.py", ()),
    )
)
# Where the innermost frame is one of these, unmatched time is the coordinator's.
_COORDINATOR = (
    "blazefl/sim/",
    "blazefl/_",
    "/anyio/",
    "/asyncio/",
    "/sniffio/",
    "/structlog/",
    "/threading.py",
    "/queue.py",
    "/selectors.py",
    "/concurrent/",
    "/multiprocessing/",
    "/contextlib.py",
    "/contextvars",
    "/functools.py",
)
_TRAINING_PARTS = (
    ("torch/optim/", "optimizer step"),
    ("torch/_functorch/", "forward+backward (vmap)"),
    ("torch/autograd/", "backward"),
    ("torch/_tensor.py", "backward"),
    ("torch/nn/", "forward"),
)
_MAX_DEPTH = 200


def _where(code: CodeType) -> str:
    return where_text(code.co_filename, code.co_name)


def _classify_codes(codes: tuple[CodeType, ...]) -> tuple[str, str]:
    """``codes`` innermost first -> (category, a short 'where' detail)."""
    if not codes:
        return "other", "(no Python frame)"
    inner = codes[0]
    inner_path = inner.co_filename.replace(os.sep, "/")
    if (os.path.basename(inner_path), inner.co_name) in _IDLE_FRAMES:
        return IDLE, _where(inner)
    paths = [c.co_filename.replace(os.sep, "/") for c in codes]
    for category, fragment, funcs in _RULES:
        for code, path in zip(codes, paths, strict=True):
            if fragment in path and (funcs is None or code.co_name in funcs):
                if category != "local training":
                    return category, _where(code)
                for part_fragment, part in _TRAINING_PARTS:
                    if any(part_fragment in p for p in paths):
                        return category, part
                return category, "training loop (Python)"
    if any(fragment in inner_path for fragment in _COORDINATOR):
        return "coordinator / event loop / scheduling", _where(inner)
    return "other", _where(inner)


_CACHE: dict[tuple[CodeType, ...], tuple[str, str]] = {}


def classify(frame: FrameType | None) -> tuple[str, str]:
    """The category of a thread whose innermost frame is ``frame``."""
    codes: list[CodeType] = []
    while frame is not None and len(codes) < _MAX_DEPTH:
        codes.append(frame.f_code)
        frame = frame.f_back
    key = tuple(codes)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = _classify_codes(key)
    return found


class Sampler:
    """Samples every thread of this process (but its own) while `active`."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.active = False
        #: thread id -> category -> seconds; details: (category, where) -> seconds
        self.seconds: dict[int, dict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self.details: dict[int, dict[tuple[str, str], float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name="round-sampler", daemon=True
        )

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.details.clear()
            self.samples = 0

    def _tick(self) -> bool:
        """Hook for subclasses: whether to record this tick."""
        return self.active

    def _run(self) -> None:
        me = threading.get_ident()
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            now = time.perf_counter()
            dt, last = now - last, now
            if not self._tick():
                continue
            with self._lock:
                self.samples += 1
                frames = sys._current_frames()
                for tid, frame in frames.items():
                    if tid != me:
                        category, where = classify(frame)
                        self.seconds[tid][category] += dt
                        self.details[tid][category, where] += dt
                del frames, frame

    def report(self) -> dict[str, Any]:
        """Per thread (main vs other; fully idle threads left out) and details."""
        with self._lock:
            return self._report()

    def _report(self) -> dict[str, Any]:
        main = threading.main_thread().ident
        roles: dict[str, dict[str, float]] = {}
        details: dict[tuple[str, str], float] = defaultdict(float)
        left_out = 0
        for tid, cats in self.seconds.items():
            if tid != main and set(cats) <= {IDLE}:
                left_out += 1
                continue
            for key, seconds in self.details[tid].items():
                details[key] += seconds
            role = roles.setdefault(
                "main thread" if tid == main else "worker threads", {}
            )
            for category, seconds in cats.items():
                role[category] = role.get(category, 0.0) + seconds
        return {
            "roles": roles,
            "threads_counted": len(self.seconds) - left_out,
            "threads_idle_left_out": left_out,
            "details": [[c, w, s] for (c, w), s in details.items()],
            "samples": self.samples,
        }


class _MarkerSampler(Sampler):
    """A worker process's sampler: records while ``marker`` exists, then dumps."""

    def __init__(self, marker: Path, interval: float) -> None:
        super().__init__(interval)
        self.marker = marker

    def _tick(self) -> bool:
        on = self.marker.exists()
        if self.active and not on:
            out = self.marker.parent / f"worker-{os.getpid()}.json"
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.report()))
            tmp.replace(out)
            self.reset()
        self.active = on
        return on


def start_worker_sampler() -> None:
    """In a spawned worker: sample while the parent's marker file exists.

    Reads ``PROFILE_ROUND_MARKER`` and ``PROFILE_ROUND_INTERVAL`` from the
    environment (set by the parent before its workers start); does nothing
    without them.
    """
    marker = os.environ.get("PROFILE_ROUND_MARKER")
    if marker:
        interval = float(os.environ.get("PROFILE_ROUND_INTERVAL", "0.005"))
        _MarkerSampler(Path(marker), interval).start()


def merge_roles(
    into: dict[str, dict[str, float]], role: str, cats: dict[str, float]
) -> None:
    target = into.setdefault(role, {})
    for category, seconds in cats.items():
        target[category] = target.get(category, 0.0) + seconds


def where_text(path: str, func: str) -> str:
    """``_where`` for a cProfile entry (a path and a function name)."""
    path = path.replace(os.sep, "/")
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
            break
    if path.startswith("."):
        path = path.split("/", 1)[-1]
    func = re.sub(r" at 0x[0-9a-f]+", "", func)
    if "/benchmarks/" in path:
        path = path.rsplit("/", 1)[-1]
    return f"{path}:{func}" if path not in ("~", "") else func


def per_round(roles: dict[str, dict[str, float]], rounds: int) -> dict[str, Any]:
    """Milliseconds per round by category and role; totals add up by design."""
    order = [r for r in ("main thread", "worker threads", "worker processes")
             if r in roles]  # fmt: skip
    categories: dict[str, dict[str, Any]] = {}
    for category in CATEGORIES:
        by_role = {r: roles[r].get(category, 0.0) * 1e3 / rounds for r in order}
        categories[category] = {"by_role": by_role, "total_ms": sum(by_role.values())}
    role_totals = {r: sum(roles[r].values()) * 1e3 / rounds for r in order}
    total: float = sum(c["total_ms"] for c in categories.values())
    return {
        "roles": order,
        "categories": categories,
        "role_total_ms": role_totals,
        "total_ms": total,
        "busy_ms": total - categories[IDLE]["total_ms"],
    }


def top_details(details: list[Any], rounds: int, count: int = 3) -> dict[str, Any]:
    """The frames (or training parts) that took most of each category."""
    summed: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for category, where, seconds in details:
        summed[category][where] += seconds * 1e3 / rounds
    return {
        category: sorted(wheres.items(), key=lambda kv: -kv[1])[:count]
        for category, wheres in summed.items()
    }


def machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    git = m.get("git") or {}
    return (
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}"
        f" ({'GIL' if m['gil_enabled'] else 'free-threaded'}), torch {m['torch']},"
        f" blazefl {m['blazefl']} ({(git.get('commit') or '?')[:10]}"
        f"{', src modified' if git.get('src_modified') else ''})."
    )


def markdown_run(run: dict[str, Any], command: str) -> str:
    """One run's table: category, ms per round (by role), shares, top frames."""
    pr, walls = run["per_round"], run["wall_seconds"]
    roles = pr["roles"]
    load = run.get("loadavg_start")
    lines = [
        f"### {run['name']}",
        "",
        f"`{command}`. Round wall time: warm-up {walls['warm_up'] * 1e3:.0f} ms,"
        f" steady without the sampler {walls['steady_unsampled'] * 1e3:.0f} ms,"
        f" sampled {walls['sampled_per_round'] * 1e3:.0f} ms/round"
        f" ({run['config']['rounds_sampled']} round(s), a sample every"
        f" {run['config']['interval_ms']:g} ms). Threads counted:"
        f" {run['threads_counted']} in the coordinator's process"
        f" + {run['worker_processes']} worker process(es); thread time adds up"
        f" to {pr['total_ms']:.0f} ms/round, of which {pr['busy_ms']:.0f} busy."
        + (f" Load average at start: {load[0]:.2f}." if load else ""),
        "",
        "| category | "
        + " | ".join(f"{r} ms" for r in roles)
        + " | total ms | share | share of busy | mostly in |",
        "|---|" + "---:|" * (len(roles) + 3) + "---|",
    ]
    for category in CATEGORIES:
        c = pr["categories"][category]
        if c["total_ms"] == 0.0:
            continue
        busy = (
            "" if category == IDLE or not pr["busy_ms"]
            else f"{c['total_ms'] / pr['busy_ms']:.1%}"
        )  # fmt: skip
        top = ", ".join(
            f"{w} {ms:.0f}" for w, ms in run["details"].get(category, [])
        ).replace("|", "/")
        cells = " | ".join(f"{c['by_role'][r]:.1f}" for r in roles)
        lines.append(
            f"| {category} | {cells} | {c['total_ms']:.1f} |"
            f" {c['total_ms'] / pr['total_ms']:.1%} | {busy} | {top} |"
        )
    totals = " | ".join(f"{pr['role_total_ms'][r]:.1f}" for r in roles)
    lines.append(f"| **all** | {totals} | {pr['total_ms']:.1f} | 100% | | |")
    functions = run.get("cprofile_main_thread") or []
    if functions:
        lines += [
            "",
            "cProfile, main thread, one more round"
            f" ({walls['cprofile_round'] * 1e3:.0f} ms under cProfile),"
            " top functions by own time:",
            "",
            "| function | calls | own ms | cumulative ms |",
            "|---|---:|---:|---:|",
        ]
        for where, calls, own, cum in functions:
            lines.append(f"| `{where}` | {calls} | {own * 1e3:.1f} | {cum * 1e3:.1f} |")
    return "\n".join(lines)


_SHORT = {
    "local training": "local training",
    "data loading / batching": "data loading",
    "RNG suite restore/capture, client state": "RNG suite, client state",
    "serialisation / payload transport": "serialisation / transport",
    "aggregation": "aggregation",
    "server evaluation": "server evaluation",
    "coordinator / event loop / scheduling": "coordinator",
    "other": "other",
}


def summary(report: dict[str, Any]) -> str:
    """All runs of a report side by side: busy ms per round and share of busy."""
    runs = report["runs"]
    lines = [
        "| category | " + " | ".join(r["name"] for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for category, short in _SHORT.items():
        cells = []
        for run in runs:
            pr = run["per_round"]
            ms = pr["categories"][category]["total_ms"]
            share = ms / pr["busy_ms"] if pr["busy_ms"] else 0.0
            cells.append(f"{ms:,.0f} ({share:.0%})")
        lines.append(f"| {short} | " + " | ".join(cells) + " |")

    def row(title: str, cell: Any) -> str:
        return f"| {title} | " + " | ".join(cell(r) for r in runs) + " |"

    lines += [
        row("**busy thread time**", lambda r: f"**{r['per_round']['busy_ms']:,.0f}**"),
        row(
            "round wall time, sampled",
            lambda r: f"{r['wall_seconds']['sampled_per_round'] * 1e3:,.0f}",
        ),
        row(
            "round wall time, not sampled",
            lambda r: f"{r['wall_seconds']['steady_unsampled'] * 1e3:,.0f}",
        ),
        row("load average at start", lambda r: f"{r['loadavg_start'][0]:.1f}"),
    ]
    return "\n".join(lines)
