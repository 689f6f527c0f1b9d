"""The many-light-clients workloads of `cohort.py` written in pfl-research.

The pfl-research column of ``cohort.py --peers``. Runs in ``.venv-pfl``
(``scripts/provision-pfl.sh``: Python 3.11, ``pfl[pytorch]==0.6.0``, torch
2.13.0, blazefl editable), in one process or under ``torchrun`` with several
(pfl shards every cohort across the processes and all-reduces the sum of the
weighted updates over gloo)::

    .venv-pfl/bin/python benchmarks/pfl_app.py --workload logreg --rounds 3 \
        --data DATA --out OUT.json
    GLOO_SOCKET_IFNAME=lo .venv-pfl/bin/torchrun --nnodes 1 --nproc-per-node 2 \
        --master-addr 127.0.0.1 --master-port PORT benchmarks/pfl_app.py ...

pfl's own pieces do the federated part: `PyTorchModel` (local optimizer
``torch.optim.SGD``, central optimizer SGD with learning rate 1, which makes
the server step ``x + mean Δ``), `FederatedAveraging`, `SimulatedBackend` with
`WeightByDatapoints` (FedAvg's data-size weights), a `FederatedDataset` whose
``make_dataset_fn`` builds each sampled user's `Dataset`, and
`FederatedAlgorithm.run`. What is shared with the hand-written loop of
``cohort.py`` is everything a comparison needs to hold fixed: the data file,
the model class and its initial parameters (those of the same seeded
`FederatedServer`), batch 10, one epoch, learning rate 0.05, every client
sampled every round, torch one intra-op thread per process.

Batch order. pfl's `Dataset.iter` slices a user's rows in the order given and
never shuffles; the hand-written loop shuffles every client's rows each round
with the client's own RNG suite. ``make_dataset_fn`` hands pfl the rows
already in the order the loop's `DataLoader` would draw them (the same
generator, the same two draws per epoch: the loader's base seed, then the
sampler's permutation; checked against the real loader at start-up), so both
train every client on the same batches. Each process replays the draws of the
rounds it did not see, so the order does not depend on which process a client
lands on.

What still differs is the aggregation arithmetic: pfl sums ``nₖ·(xₖ − x)`` in
float32 (per process, then an all-reduce), divides by ``Σ nₖ`` and adds the
mean to ``x``; blazefl's FedAvg takes ``Σ nₖ·xₖ / Σ nₖ`` in float64 and rounds
once. The final models therefore agree to rounding, not bit for bit; the
report gives the max |difference| and the test accuracy of both.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cohort
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blazefl.core import deserialize_model, serialize_model
from blazefl.reproducibility import RNGSuite, create_client_rng_suite


class PflNet(nn.Module):
    """The benchmark's model with the two methods pfl's `PyTorchModel` calls:
    ``loss`` (what `blazefl.training.train` minimises) and ``metrics``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.train()
        return F.cross_entropy(self.net(x), y)

    @torch.no_grad()
    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        from pfl.metrics import Weighted

        self.eval()
        loss = F.cross_entropy(self.net(x), y, reduction="sum").item()
        return {"loss": Weighted(loss, len(y))}


def batch_positions(loader: Any) -> torch.Tensor:
    """The row positions, in batch order, that iterating ``loader`` once would
    yield, drawn from its generator exactly as ``iter(loader)`` draws them:
    first the loader's base seed (`_BaseDataLoaderIter`), then the sampler."""
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    return torch.tensor([i for batch in loader.sampler for i in batch])


@dataclass
class Spec:
    """One workload as the hand-written loop runs it: the data, the model, its
    initial parameters, who trains in which round, the hyper-parameters, and
    whether the server evaluates on the test set after every round."""

    data: Any
    make_model: Callable[[], nn.Module]
    init: torch.Tensor
    order: list[tuple[int, int]]  # (round, cid), rounds in order
    rounds: int
    seed: int
    batch: int
    lr: float
    epochs: int
    eval_batch: int | None = None


def cohort_spec(name: str, rounds: int, data_file: Path) -> Spec:
    """A many-light-clients workload of `cohort.py` (its ``bare1`` loop)."""
    cohort._CACHE[name] = data_file
    data = cohort.dataset(name)
    server, selector = cohort._server(name, data, rounds)
    replica, _ = cohort._server(name, data, rounds)
    order = [(r, cid) for r in range(rounds) for cid in replica.sample_clients()]

    def make() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            return selector.select_model(cohort.WORKLOADS[name]["model"])

    return Spec(
        data,
        make,
        server.params,
        order,
        rounds,
        cohort.SEED,
        cohort.BATCH,
        cohort.LR,
        1,
    )


def matrix_spec(config_json: str) -> Spec:
    """A workload of `matrix.py` (its `harness.Bare` loop, which evaluates)."""
    from harness import Workload, config_from_json

    wl = Workload(config_from_json(config_json))
    cfg = wl.cfg
    init = serialize_model(wl.handler().model)
    replica = wl.handler()
    order = [(r, cid) for r in range(cfg.rounds) for cid in replica.sample_clients()]

    def make() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            return wl.zoo.select_model(cfg.model)

    return Spec(
        wl.dataset,
        make,
        init,
        order,
        cfg.rounds,
        cfg.seed,
        cfg.batch_size,
        cfg.lr,
        cfg.epochs,
        cfg.eval_batch_size or cfg.batch_size,
    )


class Users:
    """``make_dataset_fn``: the user ``(round, cid)``'s rows in the batch order
    of the hand-written loop, drawn from the client's own RNG suite.

    The loop's suite moves only in the rounds its client trains; this process
    may not have trained the client in all of them (the cohort is split across
    processes), so it first replays the draws of those it missed."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.data = spec.data
        self.suites: dict[int, RNGSuite] = {}
        self.seen: dict[int, int] = {}  # draws made so far, per client
        self.before: dict[tuple[int, int], int] = {}  # draws due before a round
        trained: dict[int, int] = {}
        for rnd, cid in spec.order:
            self.before[(rnd, cid)] = trained.get(cid, 0)
            trained[cid] = trained.get(cid, 0) + 1

    def _positions(self, cid: int) -> torch.Tensor:
        suite = self.suites.get(cid)
        if suite is None:
            suite = self.suites[cid] = create_client_rng_suite(self.spec.seed, cid)
        loader = self.data.get_dataloader(
            "train", cid, self.spec.batch, suite.torch_cpu
        )
        return torch.cat([batch_positions(loader) for _ in range(self.spec.epochs)])

    def __call__(self, key: tuple[int, int]) -> Any:
        from pfl.data.dataset import Dataset

        due = self.before[key]
        cid = key[1]
        while self.seen.get(cid, 0) < due:  # trained elsewhere in those rounds
            self._positions(cid)
            self.seen[cid] = self.seen.get(cid, 0) + 1
        view = self.data.get_dataset("train", cid)
        rows = view.indices[self._positions(cid)]
        self.seen[cid] = due + 1
        return Dataset((view.data[rows], view.targets[rows]), user_id=str(cid))


def check_batch_order(data: Any, batch: int) -> None:
    """`batch_positions` against the real loader, for a few clients."""
    for cid in range(3):
        a = create_client_rng_suite(1, cid).torch_cpu
        b = create_client_rng_suite(1, cid).torch_cpu
        view = data.get_dataset("train", cid)
        for _ in range(2):
            mine = view.indices[
                batch_positions(data.get_dataloader("train", cid, batch, a))
            ]
            batches = list(data.get_dataloader("train", cid, batch, b))
            real_x = torch.cat([x for x, _ in batches])
            real_y = torch.cat([y for _, y in batches])
            if not (
                torch.equal(view.data[mine], real_x)
                and torch.equal(view.targets[mine], real_y)
                and torch.equal(a.get_state(), b.get_state())
            ):
                raise RuntimeError("batch_positions no longer matches DataLoader")


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(spec: Spec, uploads: dict[int, torch.Tensor] | None = None) -> dict[str, Any]:
    """One pfl federation of ``rounds`` rounds; this process's share of it.

    With ``uploads``, every client's locally trained parameters are put there
    (by client id) as well: the diagnosis of `diagnose`."""
    import importlib.metadata as md

    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
    from pfl.internal.ops.selector import get_default_framework_module
    from pfl.model.pytorch import PyTorchModel

    from blazefl.training import evaluate

    check_batch_order(spec.data, spec.batch)
    rounds = spec.rounds
    cohort_size = len(spec.order) // rounds
    net = spec.make_model()
    deserialize_model(net, spec.init)
    module = PflNet(net)
    model = PyTorchModel(
        model=module,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0),
    )
    sampled = iter(spec.order)
    np.random.seed(spec.seed)  # pfl's dataset and backend seeds, same per rank
    train_data = FederatedDataset(Users(spec), lambda: next(sampled))
    rank = get_default_framework_module().distributed.global_rank
    backend = SimulatedBackend(
        training_data=train_data,
        val_data=train_data,
        postprocessors=[WeightByDatapoints()],
    )
    times: list[float] = []

    class Timer(TrainingProcessCallback):  # type: ignore[misc]
        def on_train_begin(self, *, model: Any) -> Any:
            from pfl.metrics import Metrics

            self.mark = time.perf_counter()
            return Metrics()

        def after_central_iteration(
            self, aggregate_metrics: Any, model: Any, *, central_iteration: int
        ) -> Any:
            from pfl.metrics import Metrics

            if spec.eval_batch is not None and rank == 0:  # the server's evaluation
                evaluate(net, spec.data.get_dataloader("test", None, spec.eval_batch))
            now = time.perf_counter()
            times.append(now - self.mark)
            self.mark = now
            return False, Metrics()

    class Capturing(FederatedAveraging):  # type: ignore[misc]
        def train_one_user(self, *args: Any) -> Any:
            got = super().train_one_user(*args)
            if uploads is not None:
                uploads[int(args[2].user_id)] = serialize_model(net)
            return got

    Capturing().run(
        algorithm_params=NNAlgorithmParams(
            central_num_iterations=rounds,
            evaluation_frequency=rounds + 1,
            train_cohort_size=cohort_size,
            val_cohort_size=None,
        ),
        backend=backend,
        model=model,
        model_train_params=NNTrainHyperParams(
            local_num_epochs=spec.epochs,
            local_learning_rate=spec.lr,
            local_batch_size=spec.batch,
        ),
        model_eval_params=NNEvalHyperParams(local_batch_size=None),
        callbacks=[Timer()],
        send_metrics_to_platform=False,
    )
    dist = get_default_framework_module().distributed
    return {
        "rank": dist.global_rank,
        "world_size": dist.world_size,
        "round_seconds": times,
        "params": serialize_model(net),
        "peak_rss_mib": _peak_rss_mib(),
        "pfl": md.version("pfl"),
        "cohort_size": cohort_size,
    }


def diagnose(name: str, data_file: Path) -> dict[str, Any]:
    """Where pfl's round-1 model differs from the hand-written loop's: each
    client's local training (pfl's upload against `blazefl.training.train` on
    the same rows, from the same start, with the same batches), and the
    aggregation (blazefl's FedAvg of pfl's own uploads against pfl's model)."""
    from blazefl.algorithms import ClientUpdate, FedAvg
    from blazefl.training import train

    uploads: dict[int, torch.Tensor] = {}
    spec = cohort_spec(name, 1, data_file)
    got = run(spec, uploads)
    data, start, model = spec.data, spec.init, spec.make_model()
    equal, worst, updates = 0, 0.0, []
    for cid in sorted(uploads):
        deserialize_model(model, start)
        suite = create_client_rng_suite(cohort.SEED, cid)
        loader = data.get_dataloader("train", cid, cohort.BATCH, suite.torch_cpu)
        train(model, loader, epochs=1, lr=cohort.LR)
        mine = serialize_model(model)
        equal += int(torch.equal(mine, uploads[cid]))
        worst = max(worst, float((mine - uploads[cid]).abs().max()))
        size = len(data.get_dataset("train", cid))
        updates.append(ClientUpdate(cid, uploads[cid], size))
    ours = FedAvg().aggregate(start, updates, {})
    return {
        "workload": name,
        "clients": len(uploads),
        "uploads_bitwise_equal": equal,
        "uploads_max_abs_diff": worst,
        "fedavg_of_pfl_uploads_vs_pfl_model_max_abs_diff": float(
            (ours - got["params"]).abs().max()
        ),
        "fedavg_of_pfl_uploads_vs_pfl_model_bitwise": bool(
            torch.equal(ours, got["params"])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=tuple(cohort.WORKLOADS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--matrix-config", help="a matrix.py workload (JSON Config)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--diagnose", action="store_true", help="round 1: local training vs aggregation"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cohort.configure_logging("console", level="warning")
    if args.diagnose:
        args.out.write_text(json.dumps(diagnose(args.workload, args.data), indent=2))
        return
    if args.matrix_config:
        spec = matrix_spec(args.matrix_config)
    else:
        spec = cohort_spec(args.workload, args.rounds, args.data)
    got = run(spec)
    params = got.pop("params")
    rank = got["rank"]
    out = args.out if rank == 0 else args.out.with_suffix(f".rank{rank}.json")
    if rank == 0:
        torch.save(params, args.out.with_suffix(".pt"))
    got["pid"] = os.getpid()
    out.write_text(json.dumps(got))


if __name__ == "__main__":
    main()
