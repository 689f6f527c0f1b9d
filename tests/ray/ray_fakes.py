"""Helpers for tests/ray: small federations, a probe of who served a client,
and loopback-only clusters whose processes are tracked by id. Clients
misbehave on cue through the shared `Misbehave` (tests/misbehave.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import ray
from blazefl.algorithms import Algorithm, FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import ClientContext, Simulation

NUM_CLIENTS = 6
DATA = SyntheticPartitionedDataset(
    NUM_CLIENTS, seed=0, samples_per_client=32, test_samples=100
)


def federation(
    algorithm: Algorithm | None = None, *, rounds: int = 3
) -> tuple[FederatedServer, FederatedClient]:
    """6 clients of 32 samples, half of them a round, an MLP, one epoch."""
    algorithm = FedAvg() if algorithm is None else algorithm
    server = FederatedServer(
        algorithm,
        ModelZoo(),
        "mlp",
        dataset=DATA,
        num_clients=NUM_CLIENTS,
        rounds=rounds,
        sample_ratio=0.5,
        seed=0,
    )
    client = FederatedClient(
        algorithm, ModelZoo(), "mlp", DATA, epochs=1, batch_size=16, lr=0.1
    )
    return server, client


def final_params(
    executor: Any, algorithm: Algorithm | None = None, work: Any = None, **kw: Any
) -> tuple[torch.Tensor, list[Any]]:
    """Run a whole federation; return the final global parameters and results."""
    server, client = federation(algorithm)
    sim = Simulation(server, work or client, executor=executor, seed=0, **kw)
    results = sim.run_sync()
    return server.params, results


@dataclass(frozen=True)
class Probe:
    """Reports which payload object and process served each client."""

    inner: Any

    def __call__(self, ctx: ClientContext, payload: Any) -> Any:
        ctx.metrics["payload_id"] = float(id(payload))
        ctx.metrics["pid"] = float(os.getpid())
        return self.inner(ctx, payload)


# -- processes -------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, session id, state) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    state, ppid, sid = fields[0], int(fields[1]), int(fields[3])
    return None if state in ("Z", "X") else (ppid, sid, state)


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> set[int]:
    """Live descendants of ``root`` (Ray's local processes hang off the driver)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        info = _stat(pid)
        if info is not None:
            children.setdefault(info[0], []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def in_sessions(sids: set[int]) -> set[int]:
    """Live processes in the given sessions (a `ray start` and all it started)."""
    return {
        pid
        for pid in _all_pids()
        if (info := _stat(pid)) is not None and info[1] in sids
    }


def wait_gone(pids: set[int], seconds: float = 20.0) -> set[int]:
    """Wait for ``pids`` to exit; return those still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    alive = {p for p in pids if _stat(p) is not None}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {p for p in alive if _stat(p) is not None}
    return alive


def _names(pids: set[int]) -> list[str]:
    """``pid(ppid): command line`` of each live process, for messages."""
    out = []
    for pid in sorted(pids):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            info = _stat(pid)
            parent = info[0] if info else "?"
            out.append(f"{pid}({parent}): {cmd.decode(errors='replace')[:200]}")
    return out


def _kill(pids: set[int]) -> None:
    """Last resort for our own stragglers, by pid."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def shut_down_local() -> list[str]:
    """Shut down this process's Ray instance; return processes left behind."""
    if not ray.is_initialized():
        return []
    # Exactly the instance's processes (gcs, raylet, monitors) and all they
    # started (agents, workers): other tests' processes are none of our business.
    node = ray._private.worker._global_node
    roots = (
        set()
        if node is None  # connected to a cluster, not running one
        else {
            info.process.pid
            for infos in node.all_processes.values()
            for info in infos
            if info.process is not None
        }
    )
    started = roots.union(*(descendants(pid) for pid in roots))
    ray.shutdown()
    alive = wait_gone(started)
    left = _names(alive)
    _kill(alive)
    return left


# -- a two-node cluster via `ray start` --------------------------------------

# `ray start --address` refuses to join a cluster while multi-node support is
# off, and with it on it turns 127.0.0.1 into the routable address. This is the
# `ray` command itself with that check passed and 127.0.0.1 kept as given; its
# child processes still run with multi-node support off, i.e. on loopback.
_RAY_CLI = (
    "import sys, ray._private.ray_constants as c, ray._private.services as s; "
    "c.ENABLE_RAY_CLUSTER = True; s.resolve_ip_for_localhost = lambda h: h; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TwoNodes:
    """A head node (resource ``node_a``) and a second node (``node_b``) joined
    with ``ray start --address``, one CPU each, all on 127.0.0.1."""

    def __init__(self, temp_dir: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.sessions: set[int] = set()
        self._temp_dir = temp_dir

    def _ray_start(self, *args: str) -> None:
        with subprocess.Popen(
            [sys.executable, "-c", _RAY_CLI, "start", *args],
            start_new_session=True,  # its session id (= its pid) marks all it starts
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            self.sessions.add(proc.pid)
            output, _ = proc.communicate(timeout=90)
        if proc.returncode:
            raise RuntimeError(f"ray start {args} failed:\n{output}")

    def start(self) -> None:
        common = [
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--disable-usage-stats",
        ]
        self._ray_start(
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--temp-dir={self._temp_dir}",
            '--resources={"node_a": 1}',
            *common,
        )
        self._ray_start(
            f"--address={self.address}", '--resources={"node_b": 1}', *common
        )

    def stop(self) -> list[str]:
        """Stop every process of both nodes by id: SIGTERM, then SIGKILL for any
        still there after a grace period (like ``ray stop --force``, but only
        for our own processes). Return the processes not gone even then."""
        pids = in_sessions(self.sessions)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stragglers = wait_gone(pids, 5.0) | (in_sessions(self.sessions) - pids)
        _kill(stragglers)
        return _names(wait_gone(stragglers, 10.0) | in_sessions(self.sessions))
