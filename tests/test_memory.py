"""The memory estimate and the limit it is held against (`blazefl._memory`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blazefl import ConfigurationError
from blazefl._memory import (
    STATE_BYTES,
    WORKER_PROCESS_BYTES,
    MemoryLimit,
    check_fits,
    estimate_memory,
    memory_limit,
)

GiB = 2**30


def _fake_proc(tmp_path: Path, cgroup: str, mount: str, files: dict[str, str]) -> Path:
    """A procfs with meminfo (8 GiB available), this process's cgroup line
    and one mount of the hierarchy at tmp_path/cg; ``files`` go under it."""
    proc, root = tmp_path / "proc", tmp_path / "cg"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(
        "MemTotal:       16777216 kB\nMemAvailable:    8388608 kB\n"
    )
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text(mount.replace("{cg}", str(root)) + "\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc


def test_mem_available_alone() -> None:
    """Without a cgroup limit the limit is MemAvailable, read from procfs."""
    limit = memory_limit()
    assert limit.mem_available is not None
    assert limit.mem_available > 0
    assert limit.limit is not None
    assert limit.limit <= limit.mem_available


def test_cgroup_v2_headroom_counts_reclaimable_cache(tmp_path: Path) -> None:
    """v2: memory.max - (memory.current - inactive_file), the smaller wins."""
    proc = _fake_proc(
        tmp_path,
        "0::/user.slice/job\n",
        "41 23 0:38 / {cg} rw - cgroup2 cgroup2 rw",
        {
            "user.slice/job/memory.max": str(2 * GiB),
            "user.slice/job/memory.current": str(GiB),
            "user.slice/job/memory.stat": f"anon 1\ninactive_file {GiB // 2}\n",
        },
    )
    limit = memory_limit(proc)
    assert limit == MemoryLimit(mem_available=8 * GiB, cgroup_headroom=GiB + GiB // 2)
    assert limit.limit == GiB + GiB // 2


def test_cgroup_v2_an_ancestors_limit_applies(tmp_path: Path) -> None:
    """A parent's memory.max binds its children ("max" is no limit)."""
    proc = _fake_proc(
        tmp_path,
        "0::/a/b\n",
        "41 23 0:38 / {cg} rw - cgroup2 cgroup2 rw",
        {
            "a/b/memory.max": "max",
            "a/b/memory.current": "0",
            "a/memory.max": str(GiB),
            "a/memory.current": str(GiB // 4),
        },
    )
    assert memory_limit(proc).cgroup_headroom == GiB - GiB // 4


def test_cgroup_v1_and_a_namespaced_root(tmp_path: Path) -> None:
    """v1: memory.limit_in_bytes - usage; a cgroup path not under the mount
    (a container's namespace) is read at the mount point itself."""
    proc = _fake_proc(
        tmp_path,
        "4:memory:/docker/abc\n1:cpu:/\n",
        "35 31 0:32 / {cg} rw - cgroup cgroup rw,memory",
        {
            "memory.limit_in_bytes": str(3 * GiB),
            "memory.usage_in_bytes": str(GiB),
            "memory.stat": "total_inactive_file 0\n",
        },
    )
    assert memory_limit(proc).cgroup_headroom == 2 * GiB


def test_cgroup_v1_without_a_limit(tmp_path: Path) -> None:
    """v1 writes "no limit" as about 2**63: only MemAvailable counts."""
    proc = _fake_proc(
        tmp_path,
        "4:memory:/\n",
        "35 31 0:32 / {cg} rw - cgroup cgroup rw,memory",
        {"memory.limit_in_bytes": "9223372036854771712", "memory.usage_in_bytes": "5"},
    )
    assert memory_limit(proc) == MemoryLimit(8 * GiB, None)


def test_refusal_names_the_estimate_and_the_limit() -> None:
    """Over the limit: a ConfigurationError with both numbers and the way out."""
    estimate = estimate_memory(
        clients=1000,
        clients_per_round=10,
        rounds=10,
        train_samples=1000 * 10_000,
        test_samples=1000,
        sample_bytes=576,
        model_params=1000,
        workers=2,
    )
    assert estimate.data > 5 * GiB
    with pytest.raises(
        ConfigurationError,
        match=r"^this run needs about 6\.\d GiB of memory \(data 6\.\d GiB \+ models "
        r".*\), more than the 1\.0 GiB available \(cgroup headroom 1\.0 GiB\); .* or "
        r"pass --flag$",
    ):
        check_fits(estimate, MemoryLimit(None, GiB), "pass --flag")
    check_fits(estimate, MemoryLimit(None, None), "never raised: no limit known")


def test_million_clients_with_states_on_disk_stay_small() -> None:
    """docs/scale.md's run: 1,000,000 registered, 100 a round, 40 rounds, work
    that brings its own data. On disk only a round's states count; in memory
    every client ever sampled (4,000) does, as measured (about 3 MiB a round)."""
    sizes = {
        "clients": 1_000_000,
        "clients_per_round": 100,
        "rounds": 40,
        "train_samples": 0,
        "test_samples": 0,
        "sample_bytes": 0,
        "model_params": 1000,
        "workers": 2,
        "partitions": 0,
    }
    on_disk = estimate_memory(**sizes, states_on_disk=True)  # type: ignore[arg-type]
    in_memory = estimate_memory(**sizes)  # type: ignore[arg-type]
    assert on_disk.client_states == 100 * STATE_BYTES
    assert in_memory.client_states == 4000 * STATE_BYTES
    assert on_disk.total < 8 * 2**20


def test_process_workers_add_the_parents_shared_payload_copy() -> None:
    """Process workers: the parent keeps one payload-sized shared-memory copy
    across rounds (sim/_executors/_shared_payload.py), besides each worker's
    four model-sized copies and its interpreter."""
    sizes = {
        "clients": 10,
        "clients_per_round": 4,
        "rounds": 2,
        "train_samples": 0,
        "test_samples": 0,
        "sample_bytes": 0,
        "model_params": 1000,
        "workers": 2,
    }
    threads = estimate_memory(**sizes)  # type: ignore[arg-type]
    processes = estimate_memory(**sizes, worker_processes=2)  # type: ignore[arg-type]
    assert threads.models == (4 + 4 * 2) * 4000
    assert processes.models == threads.models + 4000
    assert processes.worker_processes == 2 * WORKER_PROCESS_BYTES
