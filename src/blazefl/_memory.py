"""Will a run fit in memory? An estimate made before anything is built.

`blazefl run` (and the async-service example) call `estimate_memory` with the
run's sizes and refuse the run when the estimate exceeds `memory_limit`: the
smaller of the kernel's ``MemAvailable`` and the headroom left under the
process's cgroup memory limit (v2 ``memory.max`` or v1
``memory.limit_in_bytes``, the tightest of the cgroup and its ancestors).
Without the check, ``--clients 1000000000`` generates data until a
`MemoryError` (or the OOM killer) ends it many seconds later.

The estimate adds up what grows with the run's sizes (bytes; ``P`` is the
model's parameters x 4):

- **data**: (training + test samples) x (sample bytes + 64), plus 2 KiB per
  client for its index view, in every process that holds the data set;
- **models**: the server's ``(4 + server vectors) x P`` (global model,
  float64 accumulator, evaluation copy, the algorithm's state such as FedOpt's
  moments) plus ``4 x P`` per worker (model, gradients, payload, update;
  a worker keeps its payload copy across rounds), and one more ``P`` when
  any worker is a process (the payload's shared-memory copy in the parent,
  reused round after round);
- **updates**: a round's uplinks, held until aggregation: clients per round
  x ``(1 + uplink extras) x P``;
- **client states**: 32 KiB (the RNG suite; measured about 31 KB in
  benchmarks/scale.py) plus ``client vectors x P`` (SCAFFOLD's control
  variate) for every client whose state is kept: every client ever sampled
  when states live in memory, only one round's clients when they live on
  disk (`Simulation(client_state_path=...)`), which is what keeps the
  documented million-client runs possible;
- **worker processes**: 160 MiB each for the interpreter and torch (measured
  private memory of a spawned worker).

It leaves out activations (batch size x layer outputs) and allocator
slack, so it is a floor: a run it refuses cannot fit, one it admits may
still be tight. The constants are measured on Linux x86-64 with CPU torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from blazefl._exceptions import ConfigurationError

__all__ = [
    "CLIENT_BYTES",
    "SAMPLE_OVERHEAD_BYTES",
    "STATE_BYTES",
    "WORKER_PROCESS_BYTES",
    "MemoryEstimate",
    "MemoryLimit",
    "check_fits",
    "estimate_memory",
    "format_bytes",
    "memory_limit",
]

#: Per sample beyond its pixels: its label, index entries and generation
#: temporaries (measured: 642 bytes a 12x12 float32 sample, 576 of them pixels).
SAMPLE_OVERHEAD_BYTES = 64
#: Per client, per process holding the data set: index tensor and view.
CLIENT_BYTES = 2048
#: Per client whose state is kept: its RNG suite (Python, NumPy, torch).
STATE_BYTES = 32 * 1024
#: Per worker process (process and Ray executors): interpreter and torch.
WORKER_PROCESS_BYTES = 160 * 1024 * 1024
_SERVER_MODEL_COPIES = 4
_WORKER_MODEL_COPIES = 4
_FLOAT_BYTES = 4


def format_bytes(n: int) -> str:
    """``1.5 GiB``-style, for messages."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """A run's estimated memory by part, in bytes (see the module docstring)."""

    data: int
    models: int
    updates: int
    client_states: int
    worker_processes: int

    @property
    def total(self) -> int:
        return (
            self.data
            + self.models
            + self.updates
            + self.client_states
            + self.worker_processes
        )

    def describe(self) -> str:
        """``data 1.2 GiB + models 3.0 MiB + ...``: the parts that are not zero."""
        parts = [
            ("data", self.data),
            ("models", self.models),
            ("updates", self.updates),
            ("client states", self.client_states),
            ("worker processes", self.worker_processes),
        ]
        return " + ".join(f"{name} {format_bytes(n)}" for name, n in parts if n)


def estimate_memory(
    *,
    clients: int,
    clients_per_round: int,
    rounds: int,
    train_samples: int,
    test_samples: int,
    sample_bytes: int,
    model_params: int,
    workers: int,
    worker_processes: int = 0,
    data_copies: int = 1,
    data_bytes: int = 0,
    partitions: int | None = None,
    states_on_disk: bool = False,
    server_vectors: int = 0,
    client_vectors: int = 0,
    uplink_extras: int = 0,
) -> MemoryEstimate:
    """The estimate for one run.

    ``sample_bytes`` is one sample's pixels or features (4 x their number
    for float32); ``worker_processes`` how many of the ``workers`` are
    processes of their own (each holds the data set's index views and an
    interpreter); ``data_copies`` how many copies of the training samples
    are alive at the peak (2 when a generated set is repartitioned);
    ``data_bytes`` data known only as a whole (the files a reader loads);
    ``partitions`` how many client partitions the data set holds (default:
    ``clients``; 0 for work that brings its own data);
    ``server_vectors`` / ``client_vectors`` / ``uplink_extras`` how many
    model-sized vectors the algorithm keeps on the server, per client, and
    sends besides the model.
    """
    model = model_params * _FLOAT_BYTES
    per_sample = sample_bytes + SAMPLE_OVERHEAD_BYTES
    samples = train_samples * data_copies + test_samples
    views = (clients if partitions is None else partitions) * (1 + worker_processes)
    data = data_bytes + samples * per_sample + views * CLIENT_BYTES
    shared_payload = model if worker_processes else 0
    models = (
        (_SERVER_MODEL_COPIES + server_vectors) * model
        + _WORKER_MODEL_COPIES * model * workers
        + shared_payload
    )
    updates = clients_per_round * (1 + uplink_extras) * model
    ever_sampled = min(clients, clients_per_round * rounds)
    kept = clients_per_round if states_on_disk else ever_sampled
    states = kept * (STATE_BYTES + client_vectors * model)
    return MemoryEstimate(
        data=data,
        models=models,
        updates=updates,
        client_states=states,
        worker_processes=worker_processes * WORKER_PROCESS_BYTES,
    )


@dataclass(frozen=True, slots=True)
class MemoryLimit:
    """What a run may use: ``MemAvailable`` and the cgroup's headroom (bytes;
    None where unknown, e.g. no ``/proc/meminfo`` or no cgroup limit)."""

    mem_available: int | None
    cgroup_headroom: int | None

    @property
    def limit(self) -> int | None:
        """The smaller of the two, or None when neither is known."""
        known = [n for n in (self.mem_available, self.cgroup_headroom) if n is not None]
        return min(known) if known else None

    def describe(self) -> str:
        parts = []
        if self.mem_available is not None:
            parts.append(f"MemAvailable {format_bytes(self.mem_available)}")
        if self.cgroup_headroom is not None:
            parts.append(f"cgroup headroom {format_bytes(self.cgroup_headroom)}")
        return ", ".join(parts) or "unknown"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "max": no limit (cgroup v2)


def _mem_available(meminfo: Path) -> int | None:
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024  # kB
    return None


def _inactive_file(stat: Path, key: str) -> int:
    """Page cache the kernel reclaims before it OOM-kills (counted in usage)."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_dirs(proc: Path) -> Iterator[tuple[str, Path]]:
    """(version, folder) of this process's memory cgroups, as mounted here.

    A cgroup path from ``/proc/self/cgroup`` is relative to the hierarchy's
    root; ``mountinfo`` says where (and from which root) it is mounted.
    """
    try:
        cgroups = (proc / "self" / "cgroup").read_text().splitlines()
        mounts = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return
    wanted: dict[str, str] = {}
    for line in cgroups:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            wanted["v2"] = path
        elif "memory" in controllers.split(","):
            wanted["v1"] = path
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, kinds = left.split(), right.split()
        if len(fields) < 5 or not kinds:
            continue
        root, point = fields[3], Path(fields[4])
        version = {"cgroup2": "v2", "cgroup": "v1"}.get(kinds[0])
        if version is None or version not in wanted:
            continue
        if version == "v1" and "memory" not in kinds[-1].split(","):
            continue
        path = wanted[version]
        relative = os.path.relpath(path, root) if path.startswith(root) else "."
        folder = point / relative if relative != "." else point
        if not folder.is_dir():
            folder = point  # a namespaced cgroup: its root is the mount point
        yield version, folder
        # Ancestors' limits apply too, up to the mount point.
        while folder != point and point in folder.parents:
            folder = folder.parent
            yield version, folder


def _cgroup_headroom(proc: Path) -> int | None:
    tightest: int | None = None
    for version, folder in _cgroup_dirs(proc):
        if version == "v2":
            limit = _read_int(folder / "memory.max")
            usage = _read_int(folder / "memory.current")
            cache = _inactive_file(folder / "memory.stat", "inactive_file")
        else:
            limit = _read_int(folder / "memory.limit_in_bytes")
            usage = _read_int(folder / "memory.usage_in_bytes")
            cache = _inactive_file(folder / "memory.stat", "total_inactive_file")
        # v1 writes "no limit" as a huge number near 2**63.
        if limit is None or usage is None or limit >= 2**62:
            continue
        headroom = max(0, limit - max(0, usage - cache))
        tightest = headroom if tightest is None else min(tightest, headroom)
    return tightest


def memory_limit(proc: str | os.PathLike[str] = "/proc") -> MemoryLimit:
    """``MemAvailable`` and the cgroup headroom of this process, now.

    ``proc`` is where procfs is mounted (tests point it at a fake one).
    """
    root = Path(proc)
    return MemoryLimit(_mem_available(root / "meminfo"), _cgroup_headroom(root))


def check_fits(estimate: MemoryEstimate, limit: MemoryLimit, override: str) -> None:
    """Raise `ConfigurationError` when ``estimate`` exceeds ``limit``.

    The message gives both numbers, the estimate's parts, and ``override``
    (how to run anyway, e.g. "pass --no-memory-check").
    """
    bound = limit.limit
    if bound is None or estimate.total <= bound:
        return
    raise ConfigurationError(
        f"this run needs about {format_bytes(estimate.total)} of memory "
        f"({estimate.describe()}), more than the {format_bytes(bound)} available "
        f"({limit.describe()}); use fewer clients or samples, a smaller model, "
        f"fewer workers, or {override}"
    )
