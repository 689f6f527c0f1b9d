"""The matrix's FedAvg workload as a Flower simulation (Ray backend, loopback only).

The optional Flower column of `matrix.py`. Runs in ``.venv-flower``
(``scripts/provision-flower.sh``: Python 3.11, flwr[simulation], torch 2.13.0,
blazefl editable), through Flower's Message API: a `ServerApp` whose ``main``
drives the rounds over the `Grid`, a `ClientApp` with ``query`` and ``train``
handlers, and ``flwr.simulation.run_simulation`` with the Ray backend.

The arithmetic is the bare loop's (`harness.Bare`), so the final global model
is compared bit for bit with it:

* server: `FedAvgBaseServerHandler` with the same seed samples the clients,
  averages the uploads weighted by data size *in sampled order* (replies are
  keyed by client id, not by arrival) and evaluates, as in every other column;
* client: the same model zoo and synthetic data, the worker's cached model
  overwritten from the payload, the client's own RNG suite
  (``create_client_rng_suite(seed, cid)``) continued across rounds in the
  node's ``context.state``, `blazefl.training.train`, torch threads 1;
* payload and upload: the flat parameter vector (`serialize_model`) as one
  `Array`, which Flower serialises, stores and hands to a Ray actor.

Each actor keeps the data set and a model between messages (module globals):
a Flower app that rebuilt them per message would only be slower.

Timing: the `ServerApp` times each round itself (sample, send and receive,
aggregate, evaluate: what a blazefl round covers); finding which node holds
which partition (one ``query`` message per node) and Ray's start and shutdown
are start-up, reported apart.

Modes (both for `matrix.py`, which passes the workload as JSON)::

    python benchmarks/flower_app.py --run --config-json '{...}' --workers 2 --json-out f
    python benchmarks/flower_app.py --cell --config-json '{...}' --json-out f

``--run`` is one simulation. ``--cell`` alternates, per repetition and worker
count, a bare loop of the same rounds in this interpreter and a ``--run`` child
process, whose whole process tree (the Ray daemons and actors included) is
sampled for peak RSS, checked for sockets listening outside loopback, and
checked to be gone afterwards.
"""

from __future__ import annotations

import os

# Before Ray is imported (Flower imports it): keep every Ray process on
# 127.0.0.1 (Ray 2.x otherwise swaps it for the machine's routable address),
# and send no usage data or telemetry.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import argparse
import contextlib
import hashlib
import json
import logging
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import flwr
import structlog
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation
from harness import (
    Bare,
    Config,
    LoadMonitor,
    Workload,
    config_from_json,
    machine_info,
)
from procmon import TreeMonitor, tree_pids

import ray
from blazefl.contrib.fedavg import FedAvgUplinkPackage
from blazefl.core import deserialize_model, serialize_model
from blazefl.reproducibility import (
    RNGSuite,
    RNGSuiteState,
    create_client_rng_suite,
    set_torch_threads,
)
from blazefl.training import train


def model_digest(params: torch.Tensor) -> str:
    """SHA-256 of a flat parameter vector: equal digests, bitwise-equal models."""
    return hashlib.sha256(params.detach().contiguous().numpy().tobytes()).hexdigest()


# -- the Flower apps (imported by the Ray actors too) ------------------------


def _query(msg: Message, context: Context) -> Message:
    """Which partition (client id) this node holds."""
    partition = int(context.node_config["partition-id"])
    return Message(
        RecordDict({"node": ConfigRecord({"partition": partition})}), reply_to=msg
    )


def _train(msg: Message, context: Context) -> Message:
    """One FedAvg client update: the bare loop's `Bare.client`, in a Ray actor."""
    conf = msg.content["config"]
    cid = int(conf["cid"])
    if cid != int(context.node_config["partition-id"]):
        raise RuntimeError(f"client {cid} sent to another node's partition")
    wl, model = _worker(str(conf["workload"]))
    cfg = wl.cfg
    # The client's RNG suite lives in the node's state between rounds.
    if "rng" in context.state:
        saved = json.loads(str(context.state["rng"]["state"]))
        suite = RNGSuite.from_state(RNGSuiteState.from_dict(saved))
    else:
        suite = create_client_rng_suite(cfg.seed, cid)
    deserialize_model(model, torch.from_numpy(msg.content["arrays"]["params"].numpy()))
    loader = wl.dataset.get_dataloader("train", cid, cfg.batch_size, suite.torch_cpu)
    result = train(model, loader, epochs=cfg.epochs, lr=cfg.lr, device="cpu")
    size = len(wl.dataset.get_dataset("train", cid))  # type: ignore[arg-type]
    context.state["rng"] = ConfigRecord(
        {"state": json.dumps(suite.get_state().to_dict())}
    )
    return Message(
        RecordDict(
            {
                "arrays": ArrayRecord(
                    {"params": Array(serialize_model(model).numpy())}
                ),
                "metrics": MetricRecord(
                    {"num-examples": size, "loss": float(result.loss)}
                ),
            }
        ),
        reply_to=msg,
    )


def client_app() -> ClientApp:
    """The `ClientApp`: ``query`` and ``train`` handlers."""
    app = ClientApp()
    app.query()(_query)
    app.train()(_train)
    return app


_WORKERS: dict[str, tuple[Workload, torch.nn.Module]] = {}


def _worker(workload_json: str) -> tuple[Workload, torch.nn.Module]:
    """This actor process's data set and cached model (built on first use)."""
    cached = _WORKERS.get(workload_json)
    if cached is None:
        set_torch_threads(1)
        wl = Workload(config_from_json(workload_json))
        with torch.random.fork_rng(devices=[]):
            model = wl.zoo.select_model(wl.cfg.model)
        cached = _WORKERS[workload_json] = (wl, model)
    return cached


def server_app(cfg: Config, report: dict[str, Any]) -> ServerApp:
    """The `ServerApp`: the handler's rounds over Flower's grid, timed per round."""
    app = ServerApp()
    workload_json = json.dumps(asdict(cfg))

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        t0 = time.perf_counter()
        handler = Workload(cfg).handler()
        nodes = list(grid.get_node_ids())
        replies = grid.send_and_receive(
            [
                Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY)
                for n in nodes
            ]
        )
        node_of: dict[int, int] = {}
        for reply in replies:
            if reply.has_error():
                raise RuntimeError(f"query failed: {reply.error}")
            partition = int(reply.content["node"]["partition"])
            node_of[partition] = reply.metadata.src_node_id
        report["setup_s"] = time.perf_counter() - t0
        rounds: list[float] = []
        for _ in range(cfg.rounds):
            start = time.perf_counter()
            cids = handler.sample_clients()
            params = handler.downlink_package().model_parameters.numpy()
            messages = [
                Message(
                    RecordDict(
                        {
                            "arrays": ArrayRecord({"params": Array(params)}),
                            "config": ConfigRecord(
                                {"cid": cid, "workload": workload_json}
                            ),
                        }
                    ),
                    dst_node_id=node_of[cid],
                    message_type=MessageType.TRAIN,
                )
                for cid in cids
            ]
            by_cid: dict[int, Any] = {}
            for reply in grid.send_and_receive(messages):
                if reply.has_error():
                    raise RuntimeError(f"a client failed: {reply.error}")
                partition = next(
                    c for c, n in node_of.items() if n == reply.metadata.src_node_id
                )
                by_cid[partition] = reply.content
            for cid in cids:  # sampled order, whatever the arrival order
                content = by_cid[cid]
                size = int(content["metrics"]["num-examples"])
                handler.load(
                    FedAvgUplinkPackage(
                        cid,
                        torch.from_numpy(content["arrays"]["params"].numpy()),
                        size,
                        {"loss": content["metrics"]["loss"], "num_samples": size},
                    )
                )
            handler.get_summary()
            rounds.append(time.perf_counter() - start)
        report["rounds_s"] = rounds
        report["model_sha256"] = model_digest(serialize_model(handler.model))

    return app


def run_one(cfg: Config, workers: int, temp_dir: str) -> dict[str, Any]:
    """One Flower simulation of ``cfg.rounds`` rounds on ``workers`` Ray actors."""
    report: dict[str, Any] = {"flwr": flwr.__version__, "ray": ray.__version__}
    began = time.perf_counter()
    run_simulation(
        server_app=server_app(cfg, report),
        client_app=client_app(),
        num_supernodes=cfg.clients,
        backend_name="ray",
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": workers,
                "num_gpus": 0,
                "_node_ip_address": "127.0.0.1",
                "include_dashboard": False,
                "_temp_dir": temp_dir,
                "logging_level": logging.WARNING,
                "log_to_driver": False,
            },
        },
    )
    report["wall_s"] = time.perf_counter() - began
    if "rounds_s" not in report:
        raise RuntimeError("the Flower ServerApp did not finish (see its log above)")
    return report


# -- the cell: bare loop and Flower runs, alternating -----------------------


def _ray_pids(temp_dir: str) -> set[int]:
    """Processes whose command line names this run's private Ray temp dir."""
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if temp_dir.encode() in (proc / "cmdline").read_bytes():
                found.add(int(proc.name))
    return found


_PID = re.compile(r"pid=(\d+)")


def _listeners(pids: set[int]) -> list[str]:
    """Listening TCP/UDP sockets (``ss -ltunpH``) owned by any of ``pids``."""
    try:
        out = subprocess.run(
            ["ss", "-ltunpH"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ["(ss unavailable)"]
    mine = []
    for line in out.splitlines():
        owners = {int(p) for p in _PID.findall(line)}
        if owners & pids:
            fields = line.split()
            mine.append(f"{fields[0]} {fields[4]}")
    return mine


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _descends(pid: int, root: int) -> bool:
    """Whether ``root`` is an ancestor of ``pid`` (follows the parent chain)."""
    while pid > 1:
        pid = _parent(pid)
        if pid == root:
            return True
    return False


def _describe(pid: int) -> str:
    """``pid (parent ppid): command line``, for the report."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} (parent {_parent(pid)}): {cmd.decode(errors='replace')[:120]}"


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
    return host.startswith("127.") or host in ("::1", "localhost")


def flower_run(cfg: Config, workers: int) -> dict[str, Any]:
    """A ``--run`` child, watched: peak RSS, listeners, leftovers, other load."""
    temp_dir = tempfile.mkdtemp(prefix="bfl-ray-")
    # The report and the log live beside Ray's temp dir, which _reap removes.
    out = Path(f"{temp_dir}.json")
    log = Path(f"{temp_dir}.log")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run",
        "--config-json",
        json.dumps(asdict(cfg)),
        "--workers",
        str(workers),
        "--temp-dir",
        temp_dir,
        "--json-out",
        str(out),
    ]
    seen: set[int] = set()
    outside: dict[int, str] = {}
    listeners: set[str] = set()
    load = LoadMonitor()
    before = load.sample()
    with log.open("wb") as sink:
        child = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    stop = threading.Event()

    def watch() -> None:
        # Every 0.5 s: the child's tree, Ray processes of this run that are not
        # in it, and what they listen on.
        while not stop.wait(0.5):
            tree = set(tree_pids(child.pid))
            ray = _ray_pids(temp_dir)
            seen.update(tree | ray)
            for pid in ray - tree:
                # Started between the two scans, or really not a descendant?
                if not _descends(pid, child.pid):
                    outside.setdefault(pid, _describe(pid))
            listeners.update(_listeners(tree | ray))

    watcher = threading.Thread(target=watch, daemon=True)
    with TreeMonitor(root=child.pid, interval=0.1) as monitor:
        watcher.start()
        try:
            code = child.wait(timeout=1800)
        finally:
            stop.set()
            watcher.join()
    other = load.foreign(before, load.sample())
    leftovers = _reap(seen - {child.pid}, temp_dir)
    if code != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"Flower run failed (exit {code}): {cmd}\n{tail}")
    report = json.loads(out.read_text())
    report.update(
        workers=workers,
        peak_rss_mib=monitor.peak_rss_mib,
        processes=max((s.processes for s in monitor.samples), default=0),
        ray_processes_outside_tree=sorted(outside.values()),
        listeners=sorted(listeners),
        loopback_only=all(_loopback(x.split()[1]) for x in listeners),
        leftover_processes=leftovers,
        other_load=other,
    )
    out.unlink()
    log.unlink()
    return report


def _reap(pids: set[int], temp_dir: str) -> int:
    """Wait up to 10 s for this run's processes to exit; kill (by pid) the rest.

    Returns how many were still alive after the wait.
    """

    def ours(pid: int) -> bool:
        # Still this run's process, not a recycled pid: Ray's processes name
        # the run's temp dir, the others are this venv's interpreter.
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return temp_dir.encode() in cmd or sys.executable.encode() in cmd

    deadline = time.monotonic() + 10
    alive = {p for p in pids | _ray_pids(temp_dir) if ours(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {p for p in alive if ours(p)}
    left = len(alive)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        print(f"flower: {left} process(es) of the run outlived it; killed", flush=True)
    shutil.rmtree(temp_dir, ignore_errors=True)  # Ray's session files
    return left


def bare_run(cfg: Config, wl: Workload, workers: int) -> dict[str, Any]:
    """The bare loop for the same rounds, in this interpreter: Flower's reference."""
    bare = Bare(wl, workers)
    t0 = time.perf_counter()
    bare.start()
    startup = time.perf_counter() - t0
    load = LoadMonitor()
    before = load.sample()
    try:
        rounds = [bare.round() for _ in range(cfg.rounds)]
    finally:
        bare.close()
    return {
        "workers": workers,
        "startup_s": startup,
        "rounds_s": rounds,
        "model_sha256": model_digest(serialize_model(bare.handler.model)),
        "other_load": load.foreign(before, load.sample()),
    }


def cell(cfg: Config, out: Path) -> None:
    """Flower runs and bare-loop runs, alternating; every run's numbers to ``out``."""
    set_torch_threads(1)
    wl = Workload(cfg)
    runs: list[dict[str, Any]] = []
    for repeat in range(cfg.repeats):
        for p in cfg.workers:
            # Alternate which goes first, so neither always follows the other.
            order = ("flower", "bare") if (repeat + p) % 2 else ("bare", "flower")
            for kind in order:
                run = flower_run(cfg, p) if kind == "flower" else bare_run(cfg, wl, p)
                run.update(kind=kind, repeat=repeat)
                runs.append(run)
                later = run["rounds_s"][1:] or run["rounds_s"]
                extra = (
                    f", peak RSS {run['peak_rss_mib']:.0f} MiB, "
                    f"{run['processes']} processes, wall {run['wall_s']:.1f} s"
                    if kind == "flower"
                    else ""
                )
                print(
                    f"  rep {repeat} {kind}({p}): round 1 "
                    f"{run['rounds_s'][0] * 1e3:.0f} ms, rounds>=2 median "
                    f"{statistics.median(later) * 1e3:.0f} ms{extra}",
                    flush=True,
                )
    digests = {r["model_sha256"] for r in runs}
    info = machine_info()
    info.update(flwr=flwr.__version__, ray=ray.__version__)
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "config": asdict(cfg),
                "bitwise_identical": len(digests) == 1,
                "runs": runs,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run", action="store_true", help="one Flower simulation")
    mode.add_argument("--cell", action="store_true", help="bare vs Flower, alternating")
    parser.add_argument("--config-json", required=True, help="harness.Config as JSON")
    parser.add_argument("--workers", type=int, default=1, help="Ray actors (--run)")
    parser.add_argument("--temp-dir", help="Ray's private temp dir (--run)")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    cfg = config_from_json(args.config_json)
    if args.cell:
        cell(cfg, args.json_out)
        return 0
    set_torch_threads(1)
    # Flower logs every round at INFO; keep warnings and errors.
    logging.getLogger("flwr").setLevel(logging.WARNING)
    temp_dir = args.temp_dir or tempfile.mkdtemp(prefix="bfl-ray-")
    report = run_one(cfg, args.workers, temp_dir)
    args.json_out.write_text(json.dumps(report) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    # Run as the importable module `flower_app`, not as __main__: Ray pickles
    # the ClientApp's handlers by reference then, so each actor imports this
    # module once and keeps its data set and model between messages.
    import flower_app

    raise SystemExit(flower_app.main())
