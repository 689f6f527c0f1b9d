"""The many-light-clients workloads of `cohort.py` as a Flower simulation.

The Flower column of ``cohort.py --peers``. Runs in ``.venv-flower``
(``scripts/provision-flower.sh``: Python 3.11, flwr[simulation] 1.42, Ray,
torch 2.13.0, blazefl editable) and follows `flower_app.py` (the matrix's
Flower column): the Message API, a `ServerApp` whose ``main`` drives the
rounds over the `Grid`, a `ClientApp` with ``query`` and ``train`` handlers,
``run_simulation`` with the Ray backend on 127.0.0.1, one Ray actor per
worker, one Flower node per client (1,000 nodes for logreg and mlp, 200 for
the CNN)::

    .venv-flower/bin/python benchmarks/flower_cohort.py --workload logreg \
        --rounds 3 --workers 2 --data DATA --out OUT.json

The arithmetic is the hand-written loop's of ``cohort.py`` (``bare1``), so the
final model is compared bit for bit with it: the server is the same seeded
`FederatedServer` (sampling, ``load_round`` in sampled order, whatever order
the replies arrive in); a node trains with the same data file and model
class, the client's own RNG suite (``create_client_rng_suite(SEED, cid)``,
kept across rounds in the node's ``context.state``), `blazefl.training.train`,
torch one intra-op thread; the payload and the upload are the flat parameter
vector as one `Array`. Each actor keeps the data set and one model between
messages (module globals), as `flower_app.py` does.

The `ServerApp` times each round (sample, send and receive, aggregate); node
discovery and Ray's start and shutdown are start-up, reported apart.
"""

from __future__ import annotations

import os

# Before Ray is imported: loopback only, no usage data or telemetry.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import argparse
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cohort
import flwr
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

import ray
from blazefl.algorithms import ClientUpdate
from blazefl.core import deserialize_model, serialize_model
from blazefl.reproducibility import (
    RNGSuite,
    RNGSuiteState,
    create_client_rng_suite,
    set_torch_threads,
)
from blazefl.training import train

_WORKERS: dict[tuple[str, str], tuple[Any, torch.nn.Module]] = {}
_LOCK = threading.Lock()


def _worker(name: str, data_file: str) -> tuple[Any, torch.nn.Module]:
    """This actor's data set and cached model (built on first use)."""
    with _LOCK:
        cached = _WORKERS.get((name, data_file))
        if cached is None:
            set_torch_threads(1)
            cohort._CACHE[name] = Path(data_file)
            data = cohort.dataset(name)
            selector = cohort.Selector(data.input_shape)
            with torch.random.fork_rng(devices=[]):
                model = selector.select_model(cohort.WORKLOADS[name]["model"])
            cached = _WORKERS[(name, data_file)] = (data, model)
    return cached


def _query(msg: Message, context: Context) -> Message:
    """Which partition (client id) this node holds."""
    partition = int(context.node_config["partition-id"])
    return Message(
        RecordDict({"node": ConfigRecord({"partition": partition})}), reply_to=msg
    )


def _train(msg: Message, context: Context) -> Message:
    """One FedAvg client update: the per-client loop's ``client``, in an actor."""
    conf = msg.content["config"]
    cid = int(conf["cid"])
    if cid != int(context.node_config["partition-id"]):
        raise RuntimeError(f"client {cid} sent to another node's partition")
    data, model = _worker(str(conf["workload"]), str(conf["data"]))
    if "rng" in context.state:
        saved = json.loads(str(context.state["rng"]["state"]))
        suite = RNGSuite.from_state(RNGSuiteState.from_dict(saved))
    else:
        suite = create_client_rng_suite(cohort.SEED, cid)
    deserialize_model(model, torch.from_numpy(msg.content["arrays"]["params"].numpy()))
    loader = data.get_dataloader("train", cid, cohort.BATCH, suite.torch_cpu)
    result = train(model, loader, epochs=1, lr=cohort.LR)
    size = len(data.get_dataset("train", cid))
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
    app = ClientApp()
    app.query()(_query)
    app.train()(_train)
    return app


def server_app(name: str, rounds: int, data_file: Path, report: dict[str, Any]) -> Any:
    """The `ServerApp`: the `FederatedServer`'s rounds over Flower's grid."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        t0 = time.perf_counter()
        cohort._CACHE[name] = data_file
        server, _ = cohort._server(name, cohort.dataset(name), rounds)
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
            node_of[int(reply.content["node"]["partition"])] = (
                reply.metadata.src_node_id
            )
        cid_of = {n: c for c, n in node_of.items()}
        report["setup_s"] = time.perf_counter() - t0
        times: list[float] = []
        for _ in range(rounds):
            start = time.perf_counter()
            cids = server.sample_clients()
            params = server.downlink_package().params.numpy()
            conf = {"workload": name, "data": str(data_file)}
            messages = [
                Message(
                    RecordDict(
                        {
                            "arrays": ArrayRecord({"params": Array(params)}),
                            "config": ConfigRecord({"cid": cid, **conf}),
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
                by_cid[cid_of[reply.metadata.src_node_id]] = reply.content
            updates = [
                ClientUpdate(
                    cid,
                    torch.from_numpy(by_cid[cid]["arrays"]["params"].numpy()),
                    int(by_cid[cid]["metrics"]["num-examples"]),
                    metrics={"loss": float(by_cid[cid]["metrics"]["loss"])},
                )
                for cid in cids  # sampled order, whatever the arrival order
            ]
            server.load_round(updates)
            times.append(time.perf_counter() - start)
        report["round_seconds"] = times
        report["params"] = server.params.clone()

    return app


def run(name: str, rounds: int, workers: int, data_file: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"flwr": flwr.__version__, "ray": ray.__version__}
    temp_dir = tempfile.mkdtemp(prefix="bfl-ray-")
    began = time.perf_counter()
    run_simulation(
        server_app=server_app(name, rounds, data_file, report),
        client_app=client_app(),
        num_supernodes=cohort.WORKLOADS[name]["clients"],
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
    if "round_seconds" not in report:
        raise RuntimeError("the Flower ServerApp did not finish (see its log above)")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=tuple(cohort.WORKLOADS), required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    set_torch_threads(1)
    cohort.configure_logging("console", level="warning")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    report = run(args.workload, args.rounds, args.workers, args.data.resolve())
    torch.save(report.pop("params"), args.out.with_suffix(".pt"))
    args.out.write_text(json.dumps(report))


if __name__ == "__main__":
    # Run as the importable module, so Ray pickles the handlers by reference
    # and each actor imports this module once (see flower_app.py).
    import flower_cohort

    flower_cohort.main()
