"""The shared FedAvg workload and the bare loop it is compared against.

`Workload` holds the data set, the model zoo and the client work every
variant shares; `BareLoop` is a round written by hand (a for-loop, or a
thread pool of p workers) and `Bare` is FedAvg in it: what a user would write
without blazefl.sim, doing the same arithmetic as `Simulation` so the final
models can be checked bit for bit.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.reduction import ForkingPickler
from typing import Any

import torch
from harness_config import Config

from blazefl.contrib.fedavg import (
    FedAvgBaseServerHandler,
    FedAvgClientWork,
    FedAvgDownlinkPackage,
    FedAvgUplinkPackage,
)
from blazefl.core import deserialize_model, serialize_model
from blazefl.data import SyntheticCIFAR10, SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.reproducibility import RNGSuite, create_client_rng_suite
from blazefl.training import train


class Workload:
    """The data set, model zoo and hyper-parameters every variant shares."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dataset: SyntheticPartitionedDataset
        if cfg.dataset == "cifar":
            self.zoo = ModelZoo(input_shape=(3, 32, 32), num_classes=10)
            self.dataset = SyntheticCIFAR10(
                cfg.clients,
                seed=cfg.seed,
                samples_per_client=cfg.samples_per_client,
                test_samples=cfg.test_samples,
            )
        elif cfg.dataset == "synthetic":
            self.zoo = ModelZoo(input_shape=(1, 12, 12), num_classes=10)
            self.dataset = SyntheticPartitionedDataset(
                cfg.clients,
                seed=cfg.seed,
                samples_per_client=cfg.samples_per_client,
                test_samples=cfg.test_samples,
            )
        else:
            raise ValueError(f"unknown dataset {cfg.dataset!r}")
        self.work = FedAvgClientWork(
            self.zoo,
            cfg.model,
            self.dataset,
            cfg.epochs,
            cfg.batch_size,
            cfg.lr,
        )
        # ProcessExecutor pickles the work with ForkingPickler, which moves every
        # tensor it reaches (the data set) into shared memory *in place*. Do it
        # once up front so every variant reads the same kind of memory.
        ForkingPickler.dumps(self.work)

    def handler(self) -> FedAvgBaseServerHandler:
        cfg = self.cfg
        return FedAvgBaseServerHandler(
            self.zoo,
            cfg.model,
            self.dataset,
            global_round=cfg.rounds,
            num_clients=cfg.clients,
            sample_ratio=cfg.sampled / cfg.clients,
            device="cpu",
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            seed=cfg.seed,
        )


# -- the bare, hand-written loop -------------------------------------------


class BareLoop:
    """A round by hand, the part every bare loop shares.

    Each sampled client's `RNGSuite` is derived from (seed, cid) on first use
    and simply continued across rounds; the clients run in a for-loop at
    parallelism 1, on a `ThreadPoolExecutor(p)` above; the uploads are loaded
    in sampled order; `after_round` runs inside the timed round. Subclasses
    give `new_handler` and `client`.
    """

    def __init__(self, parallelism: int, seed: int) -> None:
        self.parallelism = parallelism
        self.seed = seed

    def new_handler(self) -> Any:
        raise NotImplementedError

    def client(self, cid: int, payload: Any) -> Any:
        raise NotImplementedError

    def after_round(self) -> None:
        """What the round does after loading the uploads (nothing)."""

    def start(self) -> None:
        self.handler = self.new_handler()
        self.suites: dict[int, RNGSuite] = {}
        self.pool = (
            ThreadPoolExecutor(self.parallelism) if self.parallelism > 1 else None
        )

    def round(self) -> float:
        handler = self.handler
        start = time.perf_counter()
        cids = handler.sample_clients()
        payload = handler.downlink_package()
        for cid in cids:
            if cid not in self.suites:
                self.suites[cid] = create_client_rng_suite(self.seed, cid)
        if self.pool is None:
            uploads = [self.client(cid, payload) for cid in cids]
        else:
            uploads = list(self.pool.map(self.client, cids, [payload] * len(cids)))
        for upload in uploads:
            handler.load(upload)
        self.after_round()
        return time.perf_counter() - start

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class Bare(BareLoop):
    """FedAvg by hand: what a user would write without blazefl.sim.

    Per client: the worker's cached model gets the payload's parameters, the
    client's own RNG suite (derived from (seed, cid) on first use and simply
    continued across rounds) shuffles its batches, `train` runs, the model is
    serialised into an uplink. The server loads the uplinks in sampled order
    and evaluates, exactly as `Simulation` makes it do. At parallelism p > 1
    the clients go to a `ThreadPoolExecutor(p)`, one cached model per thread.
    """

    def __init__(self, wl: Workload, parallelism: int) -> None:
        super().__init__(parallelism, wl.cfg.seed)
        self.wl = wl

    def new_handler(self) -> FedAvgBaseServerHandler:
        return self.wl.handler()

    def start(self) -> None:
        super().start()
        self.local = threading.local()

    def client(self, cid: int, payload: FedAvgDownlinkPackage) -> FedAvgUplinkPackage:
        cfg, dataset = self.wl.cfg, self.wl.dataset
        model = getattr(self.local, "model", None)
        if model is None:
            with torch.random.fork_rng(devices=[]):
                model = self.local.model = self.wl.zoo.select_model(cfg.model)
        deserialize_model(model, payload.model_parameters)
        loader = dataset.get_dataloader(
            "train", cid, cfg.batch_size, self.suites[cid].torch_cpu
        )
        result = train(model, loader, epochs=cfg.epochs, lr=cfg.lr, device="cpu")
        size = len(dataset.get_dataset("train", cid))  # type: ignore[arg-type]
        return FedAvgUplinkPackage(
            cid,
            serialize_model(model),
            size,
            {"loss": result.loss, "num_samples": size},
        )

    def after_round(self) -> None:
        self.handler.get_summary()
