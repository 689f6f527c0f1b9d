"""FedAvg written exactly as for BlazeFL 3.0: its module paths, its loop, its hooks.

Nothing here is blazefl-specific beyond the data and model classes the script
defines itself: the imports are BlazeFL 3.0's submodule paths, the loop is
3.0's ``while not handler.is_stopped()``, and the trainer overrides
``progress_fn`` the way 3.0's own DS-FL example does (a tqdm bar over
``as_completed``). Run it with ``python examples/blazefl3-fedavg/main.py``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from concurrent.futures import as_completed
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from blazefl.contrib.fedavg import (
    FedAvgBaseServerHandler,
    FedAvgPartitionType,
    FedAvgThreadPoolClientTrainer,
)
from blazefl.core.model_selector import ModelSelector
from blazefl.core.partitioned_dataset import FilteredDataset, PartitionedDataset
from blazefl.reproducibility.snapshot import seed_everything


class Blobs(PartitionedDataset[FedAvgPartitionType]):
    """Gaussian blobs, 4 classes, split over clients by index (a user's own set)."""

    def __init__(self, num_clients: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        centers = torch.randn(4, 8, generator=gen) * 3
        labels = torch.randint(0, 4, (num_clients * 40 + 200,), generator=gen)
        points = centers[labels] + torch.randn(len(labels), 8, generator=gen)
        self.x, self.y = points, labels
        self.num_clients = num_clients

    def get_dataset(self, type_: FedAvgPartitionType, cid: int | None) -> Dataset[Any]:
        if type_ == FedAvgPartitionType.TEST:
            rows = list(range(self.num_clients * 40, len(self.y)))
        else:
            assert cid is not None
            rows = list(range(cid * 40, cid * 40 + 40))
        return FilteredDataset(rows, self.x.tolist(), self.y.tolist())

    def set_dataset(self, type_: FedAvgPartitionType, cid: int | None, d: Any) -> None:
        raise NotImplementedError

    def get_dataloader(
        self,
        type_: FedAvgPartitionType,
        cid: int | None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> DataLoader[Any]:
        dataset = self.get_dataset(type_, cid)
        return DataLoader(
            dataset,
            batch_size=batch_size or len(dataset),  # type: ignore[arg-type]
            shuffle=type_ == FedAvgPartitionType.TRAIN,
            generator=generator,
            collate_fn=lambda rows: (
                torch.tensor([r[0] for r in rows]),
                torch.tensor([r[1] for r in rows]),
            ),
        )


class Models(ModelSelector[str]):
    def select_model(self, model_name: str) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


class ProgressTrainer(FedAvgThreadPoolClientTrainer):
    """BlazeFL 3.0's own override: a bar that advances as clients complete."""

    def progress_fn(self, it: list[Any]) -> Any:
        return tqdm(as_completed(it), total=len(it), desc="clients", leave=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    # BlazeFL's examples turn SIGTERM into an exception, as Ctrl-C is.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    seed_everything(0)
    data, models = Blobs(args.clients, seed=0), Models()
    handler = FedAvgBaseServerHandler(
        models, "mlp", data, args.rounds, args.clients, 0.5, "cpu", 64, 0
    )
    trainer = ProgressTrainer(models, "mlp", data, "cpu", args.clients, 2, 8, 0.1, 0, 2)
    while not handler.is_stopped():
        sampled = handler.sample_clients()
        trainer.local_process(handler.downlink_package(), sampled)
        for package in trainer.uplink_package():
            handler.load(package)
        summary = handler.get_summary()
        print(f"round {handler.round}: accuracy {summary['server_acc']:.3f}")


if __name__ == "__main__":
    main()
