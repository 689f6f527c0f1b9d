"""The many-light-clients workloads of `cohort.py` through BlazeFL 3.0 itself.

The BlazeFL 3.0 column of ``cohort.py --peers``. BlazeFL 3.0.0 needs Python
>= 3.14 and cannot share an interpreter (nor the package name) with this
project, so this script has two halves:

* ``export`` (this project's interpreter, called by `cohort_peers`): writes the
  workload as plain tensors (the training rows, each client's row indices, the
  test set, the model's initial ``state_dict``), nothing that needs ``blazefl``
  to unpickle;
* ``--run`` (the venv ``scripts/provision-blazefl3.sh`` builds): BlazeFL 3.0's
  own ``FedAvgBaseServerHandler`` and one of its three trainers,
  ``FedAvgBaseClientTrainer`` (``base``, sequential),
  ``FedAvgThreadPoolClientTrainer`` (``threads``) or
  ``FedAvgProcessPoolClientTrainer`` (``processes``, a fresh pool every round,
  as BlazeFL 3.0 does), driven by the loop its users write::

      ~/.cache/blazefl3/venv/bin/python benchmarks/blazefl3_cohort.py --run \
          --blob BLOB --flavour threads --workers 2 --rounds 3 --out OUT.json

Same as the hand-written loop: the data, the model class (the same layers and
``state_dict`` keys, checked by a strict ``load_state_dict``), the initial
parameters, batch 10, one epoch, lr 0.05, plain SGD on cross-entropy, every
client every round, torch one intra-op thread; the loader fetches a whole
batch at a time, as ours does, so the loader's cost is not what is compared.
Not the same: BlazeFL 3.0 draws each client's batch order from its own
generators (one generator for all clients in ``base``, ``seed + cid`` in the
others), so the final model is compared by max |difference| and test accuracy,
not bit for bit. Its aggregation is ``Σ xₖ·(nₖ/N)`` in float32.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

# -------------------------------------------- the 3.14 side: models and data


class MLP(nn.Module):
    """``blazefl.models.MLP``'s layers: Flatten, Linear (ReLU, Linear)*."""

    def __init__(self, in_features: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        widths = (in_features, *hidden, 10)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(fan_in, fan_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


class CNN(nn.Module):
    """``blazefl.models.CNN``'s layers for 1x12x12 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * 3 * 3, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        out: torch.Tensor = self.fc2(x)
        return out


class Selector:
    """BlazeFL 3.0's ``ModelSelector``: every model starts from the blob's
    initial ``state_dict``."""

    def __init__(self, init: dict[str, torch.Tensor]) -> None:
        self.init = init

    def select_model(self, model_name: str) -> nn.Module:
        if model_name == "logreg":
            model: nn.Module = MLP(60, ())
        elif model_name == "mlp":
            model = MLP(60, (64,))
        else:
            model = CNN()
        model.load_state_dict(self.init, strict=True)
        return model


class View(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The rows ``indices`` of ``(data, targets)``, a whole batch per fetch."""

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, indices: Any) -> None:
        self.data, self.targets, self.indices = data, targets, indices

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[torch.as_tensor(index, dtype=torch.int64)]
        return self.data[rows], self.targets[rows]


def _keep(batch: Any) -> Any:
    return batch


class Partitioned:
    """BlazeFL 3.0's ``PartitionedDataset`` over the blob's tensors."""

    def __init__(self, blob: dict[str, Any]) -> None:
        self.x, self.y, self.parts = blob["x"], blob["y"], blob["parts"]
        self.test = View(
            blob["test_x"], blob["test_y"], torch.arange(len(blob["test_y"]))
        )

    def get_dataset(self, type_: str, cid: int | None) -> View:
        if str(type_) == "train" and cid is not None:
            return View(self.x, self.y, self.parts[cid])
        return self.test

    def set_dataset(self, type_: str, cid: int | None, dataset: Any) -> None:
        pass

    def get_dataloader(
        self,
        type_: str,
        cid: int | None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> DataLoader[Any]:
        view = self.get_dataset(type_, cid)
        order: RandomSampler | SequentialSampler = (
            SequentialSampler(view)
            if view is self.test
            else RandomSampler(view, generator=generator)
        )
        sampler = BatchSampler(order, batch_size or len(view), False)
        return DataLoader(
            view,
            batch_size=None,
            sampler=sampler,
            collate_fn=_keep,
            generator=generator,
        )


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(blob_file: Path, flavour: str, workers: int, rounds: int) -> dict[str, Any]:
    """BlazeFL 3.0's FedAvg loop; round times, final parameters."""
    import importlib.metadata as md

    from blazefl.contrib.fedavg import (
        FedAvgBaseClientTrainer,
        FedAvgBaseServerHandler,
        FedAvgProcessPoolClientTrainer,
        FedAvgThreadPoolClientTrainer,
    )
    from blazefl.core import serialize_model

    torch.set_num_threads(1)
    blob = torch.load(blob_file, weights_only=False)
    for t in (blob["x"], blob["y"], blob["test_x"], blob["test_y"], *blob["parts"]):
        t.share_memory_()  # pickled into every process-pool task as a handle
    selector, data = Selector(blob["init"]), Partitioned(blob)
    name, n, seed = blob["model"], len(blob["parts"]), blob["seed"]
    ratio, eval_batch = blob["sampled"] / n, blob["eval_batch"]
    server = FedAvgBaseServerHandler(
        selector, name, data, rounds, n, ratio, "cpu", eval_batch or 256, seed
    )
    common = (data, "cpu", n, blob["epochs"], blob["batch"], blob["lr"], seed)
    state_dir = Path(tempfile.mkdtemp(prefix="bfl3-state-"))
    trainer: Any
    if flavour == "base":
        trainer = FedAvgBaseClientTrainer(selector, name, *common)
    elif flavour == "threads":
        trainer = FedAvgThreadPoolClientTrainer(selector, name, *common, workers)
    else:
        trainer = FedAvgProcessPoolClientTrainer(
            selector, name, state_dir, *common, workers
        )
    trainer.progress_fn = lambda it: it  # no tqdm bars
    times = []
    while not server.is_stopped():
        start = time.perf_counter()
        sampled = server.sample_clients()
        trainer.local_process(server.downlink_package(), sampled)
        for pack in trainer.uplink_package():
            server.load(pack)
        if eval_batch is not None:  # the matrix's server evaluates every round
            server.get_summary()
        times.append(time.perf_counter() - start)
    if flavour == "processes":
        trainer.shutdown()
    return {
        "round_seconds": times,
        "params": serialize_model(server.model),
        "peak_rss_mib_parent": _peak_rss_mib(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "blazefl": md.version("blazefl"),
    }


# ------------------------------------------ this project's side: the export


def export(name: str, data: Any, init: torch.Tensor, path: Path) -> None:
    """Write `cohort.py`'s workload ``name`` (its `TensorPartitionedDataset`,
    the flat initial parameters) as plain tensors for the 3.14 side."""
    import cohort

    kind = cohort.WORKLOADS[name]["model"]
    with torch.random.fork_rng(devices=[]):
        model = cohort.Selector(data.input_shape).select_model(kind)
    spec = {"seed": cohort.SEED, "batch": cohort.BATCH, "lr": cohort.LR, "epochs": 1}
    write_blob(data, model, init, kind, spec, path)


def write_blob(
    data: Any,
    model: nn.Module,
    init: torch.Tensor,
    kind: str,
    spec: dict[str, Any],
    path: Path,
) -> None:
    """Plain tensors for the 3.14 side: the data, ``model``'s ``state_dict`` at
    the flat parameters ``init``, ``kind`` (logreg, mlp or cnn) and ``spec``:
    seed, batch, lr, epochs, and optionally sampled (clients per round, all by
    default) and eval_batch (the server evaluates every round)."""
    from blazefl.core import deserialize_model

    deserialize_model(model, init)
    train, test = data.get_dataset("train", None), data.get_dataset("test", None)
    blob = {
        "x": train.data,
        "y": train.targets,
        "parts": [
            data.get_dataset("train", c).indices for c in range(data.num_clients)
        ],
        "test_x": test.data[test.indices],
        "test_y": test.targets[test.indices],
        "init": {k: v.clone() for k, v in model.state_dict().items()},
        "model": kind,
        "sampled": data.num_clients,
        "eval_batch": None,
        **spec,
    }
    torch.save(blob, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", required=True)
    parser.add_argument("--blob", type=Path, required=True)
    parser.add_argument("--flavour", choices=("base", "threads", "processes"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    got = run(args.blob, args.flavour, args.workers, args.rounds)
    torch.save(got.pop("params"), args.out.with_suffix(".pt"))
    args.out.write_text(json.dumps(got))


if __name__ == "__main__":
    main()
