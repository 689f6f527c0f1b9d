"""FedAvg, with BlazeFL 3.0's server handler and its three client trainers.

All three trainers (sequential, thread pool, process pool) run the *same*
client work, `FedAvgClientWork`, with each client's RNG suite kept by the
coordinator, so for one seed they produce bitwise-identical global models. The
local training is `blazefl.training.train`, the one loop every algorithm uses.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import torch

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number
from blazefl.algorithms import Broadcast, FedAvg, FederatedClient, weighted_average
from blazefl.algorithms._server import (
    check_federation_size,
    check_like_model,
    clients_per_round,
)
from blazefl.core import (
    ModelSelector,
    PartitionedDataset,
    ProcessPoolClientTrainer,
    ThreadPoolClientTrainer,
    deserialize_model,
    process_tensors_in_object,
    serialize_model,
)
from blazefl.models import build_model
from blazefl.reproducibility import (
    RNGSuiteState,
    create_client_rng_suite,
    create_rng_suite,
)
from blazefl.sim._context import ClientContext
from blazefl.sim._sync import run_local_process
from blazefl.training import evaluate

__all__ = [
    "FedAvgBaseClientTrainer",
    "FedAvgBaseServerHandler",
    "FedAvgClientConfig",
    "FedAvgClientWork",
    "FedAvgDownlinkPackage",
    "FedAvgPartitionType",
    "FedAvgPartitionedDataset",
    "FedAvgProcessPoolClientTrainer",
    "FedAvgThreadPoolClientTrainer",
    "FedAvgUplinkPackage",
]


class FedAvgPartitionType(StrEnum):
    TRAIN = "train"
    TEST = "test"


class FedAvgPartitionedDataset(PartitionedDataset[FedAvgPartitionType], Protocol):
    """A data set with one ``TRAIN`` partition per client and a server ``TEST`` set."""


@dataclass
class FedAvgUplinkPackage:
    cid: int
    model_parameters: torch.Tensor
    data_size: int
    metadata: dict[str, Any] | None = None


@dataclass
class FedAvgDownlinkPackage:
    model_parameters: torch.Tensor


@dataclass(frozen=True)
class FedAvgClientWork:
    """One FedAvg client: load the global model, train locally, upload.

    Each worker builds the model once (in ``ctx.cache``) and overwrites its
    parameters from the payload, so the result depends only on the payload
    and the client's RNG suite.
    """

    model_selector: ModelSelector[Any]
    model_name: Any
    dataset: PartitionedDataset[Any]
    epochs: int
    batch_size: int
    lr: float

    def __post_init__(self) -> None:
        # Built (and validated) once, not per client: FedAvg's client update
        # is the generic one.
        client = FederatedClient(
            FedAvg(),
            self.model_selector,
            self.model_name,
            self.dataset,
            self.epochs,
            self.batch_size,
            self.lr,
        )
        object.__setattr__(self, "_client", client)

    def __call__(
        self, ctx: ClientContext, payload: FedAvgDownlinkPackage
    ) -> FedAvgUplinkPackage:
        client: FederatedClient = self._client  # type: ignore[attr-defined]
        update = client(ctx, Broadcast(ctx.round, payload.model_parameters))
        return FedAvgUplinkPackage(
            ctx.cid,
            update.params,
            update.num_samples,
            {"loss": update.metrics["loss"], "num_samples": update.num_samples},
        )


class FedAvgBaseServerHandler:
    """The FedAvg server: samples clients, broadcasts, averages by data size.

    Samples ``int(num_clients * sample_ratio)`` clients per round without
    replacement (sorted) from its own RNG seeded by ``seed``, never the global
    one; the initial global model is built from ``seed`` as well.
    """

    def __init__(
        self,
        model_selector: ModelSelector[Any],
        model_name: Any,
        dataset: PartitionedDataset[Any],
        global_round: int,
        num_clients: int,
        sample_ratio: float,
        device: str,
        batch_size: int,
        seed: int,
    ) -> None:
        self.global_round = check_int("global_round", global_round)
        self.num_clients = check_int("num_clients", num_clients)
        self.num_clients_per_round = clients_per_round(num_clients, sample_ratio)
        check_federation_size(num_clients, dataset)
        self.batch_size = check_int("batch_size", batch_size)
        self.seed = check_int("seed", seed, minimum=0)
        self.model_selector = model_selector
        self.model_name = model_name
        self.dataset = dataset
        self.sample_ratio = sample_ratio
        self.device = device
        self.model = build_model(model_selector, model_name, seed).to(device)
        self.rng_suite = create_rng_suite(seed)
        self.client_buffer_cache: list[FedAvgUplinkPackage] = []
        self.round = 0

    def sample_clients(self) -> list[int]:
        return sorted(
            self.rng_suite.python.sample(
                range(self.num_clients), self.num_clients_per_round
            )
        )

    def is_stopped(self) -> bool:
        return self.round >= self.global_round

    def downlink_package(self) -> FedAvgDownlinkPackage:
        return FedAvgDownlinkPackage(serialize_model(self.model))

    def check_uplink(self, package: Any) -> None:
        """Refuse a malformed upload before anything is averaged.

        Cheap (no pass over the data): the package's ``model_parameters`` must
        have the shape and dtype of the global model's flat vector
        (`serialize_model`), and ``data_size`` must be an integer >= 1.
        `blazefl.sim.Simulation` calls it on every client's upload, so a
        malformed one becomes that client's failed slot; `load` and
        `global_update` call it as well.

        :raises ConfigurationError: (a `ValueError`) naming the client, the
            tensor, and the shape and dtype seen and expected.
        """
        cid = getattr(package, "cid", None)
        who = "a client" if cid is None else f"client {cid}"
        if not hasattr(package, "model_parameters"):
            raise ConfigurationError(
                f"{who} sent a {type(package).__name__} without model_parameters; "
                "expected a FedAvgUplinkPackage"
            )
        shape, dtype = self._model_spec()
        check_like_model(
            who, "model_parameters", package.model_parameters, shape, dtype
        )
        size = getattr(package, "data_size", None)
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ConfigurationError(
                f"{who} reported data_size={size!r}; an upload must come from an "
                "integer number >= 1 of training samples"
            )

    def _model_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        """The flat model vector's shape and dtype, as `serialize_model` makes
        it, read from the state's metadata without copying anything."""
        tensors = list(self.model.state_dict().values())
        if not tensors:
            return (0,), torch.empty(0).dtype
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        return (sum(t.numel() for t in tensors),), dtype

    def load(self, payload: FedAvgUplinkPackage) -> bool:
        """Take one upload; aggregate once the round's sampled count arrived."""
        try:
            self.check_uplink(payload)
        except ConfigurationError:
            self.client_buffer_cache = []  # a rejected round leaves nothing behind
            raise
        self.client_buffer_cache.append(payload)
        if len(self.client_buffer_cache) == self.num_clients_per_round:
            self.load_round(self.client_buffer_cache)
            return True
        return False

    def load_round(self, packages: list[FedAvgUplinkPackage]) -> None:
        """Aggregate a whole round at once (also one with dropped clients)."""
        try:
            self.global_update(packages)
        finally:
            self.client_buffer_cache = []
        self.round += 1

    def global_update(self, buffer: list[FedAvgUplinkPackage]) -> None:
        """Average the uploads weighted by data size, in buffer order."""
        for package in buffer:
            self.check_uplink(package)
        averaged = weighted_average(
            [p.model_parameters for p in buffer], [p.data_size for p in buffer]
        )
        deserialize_model(self.model, averaged)

    @staticmethod
    def evaluate(
        model: torch.nn.Module, test_loader: Any, device: str
    ) -> tuple[float, float]:
        return evaluate(model, test_loader, device)

    def get_summary(self) -> dict[str, float]:
        loader = self.dataset.get_dataloader(
            FedAvgPartitionType.TEST, None, self.batch_size, None
        )
        loss, acc = self.evaluate(self.model, loader, self.device)
        return {"server_acc": acc, "server_loss": loss}


class _FedAvgTrainerMixin:
    """What the three FedAvg trainers share: validation and the client work."""

    def _setup(
        self,
        model_selector: ModelSelector[Any],
        model_name: Any,
        dataset: PartitionedDataset[Any],
        device: str,
        num_clients: int,
        epochs: int,
        batch_size: int,
        lr: float,
        seed: int,
    ) -> None:
        self.model_selector = model_selector
        self.model_name = model_name
        self.dataset = dataset
        self.device = device
        self.device_count = torch.cuda.device_count() if device == "cuda" else 0
        self.num_clients = check_int("num_clients", num_clients)
        check_federation_size(num_clients, dataset)
        self.epochs = check_int("epochs", epochs)
        self.batch_size = check_int("batch_size", batch_size)
        self.lr = check_number("lr", lr)
        self.seed = check_int("seed", seed, minimum=0)
        self.cache: list[FedAvgUplinkPackage] = []

    def as_client_work(self) -> FedAvgClientWork:
        """The native client work the coordinator runs for this trainer."""
        return FedAvgClientWork(
            self.model_selector,
            self.model_name,
            self.dataset,
            self.epochs,
            self.batch_size,
            self.lr,
        )

    def progress_fn(self, it: Any) -> Any:
        """A tqdm bar over client completions (needs the ``contrib`` extra)."""
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - the contrib extra is missing
            return it
        return tqdm(it, desc="Client", leave=False, total=len(it))


class FedAvgBaseClientTrainer(_FedAvgTrainerMixin):
    """FedAvg clients run one after another in this process."""

    def __init__(
        self,
        model_selector: ModelSelector[Any],
        model_name: Any,
        dataset: FedAvgPartitionedDataset,
        device: str,
        num_clients: int,
        epochs: int,
        batch_size: int,
        lr: float,
        seed: int,
    ) -> None:
        self._setup(
            model_selector,
            model_name,
            dataset,
            device,
            num_clients,
            epochs,
            batch_size,
            lr,
            seed,
        )

    def get_client_device(self, cid: int) -> str:
        return self.device

    def local_process(
        self, payload: FedAvgDownlinkPackage, cid_list: list[int]
    ) -> None:
        from blazefl.sim import InlineExecutor

        self.cache = run_local_process(
            self, InlineExecutor, payload, cid_list, keep_executor=False
        )

    def uplink_package(self) -> list[FedAvgUplinkPackage]:
        packages, self.cache = self.cache, []
        return packages


class FedAvgThreadPoolClientTrainer(
    _FedAvgTrainerMixin,
    ThreadPoolClientTrainer[FedAvgUplinkPackage, FedAvgDownlinkPackage],
):
    """FedAvg clients run on ``num_parallels`` threads."""

    def __init__(
        self,
        model_selector: ModelSelector[Any],
        model_name: Any,
        dataset: FedAvgPartitionedDataset,
        device: str,
        num_clients: int,
        epochs: int,
        batch_size: int,
        lr: float,
        seed: int,
        num_parallels: int,
    ) -> None:
        self._setup(
            model_selector,
            model_name,
            dataset,
            device,
            num_clients,
            epochs,
            batch_size,
            lr,
            seed,
        )
        self.num_parallels = check_int("num_parallels", num_parallels)
        import threading

        self.stop_event = threading.Event()

    def worker(
        self,
        cid: int,
        device: str,
        payload: FedAvgDownlinkPackage,
        stop_event: Any,
    ) -> FedAvgUplinkPackage:
        """One client outside the coordinator (BlazeFL API); prefer local_process.

        Uses a fresh RNG suite for ``cid`` derived from the seed, i.e. the
        client's first-round stream.
        """
        return _run_detached(
            self.as_client_work(), cid, device, payload, stop_event, self.seed, None
        )


@dataclass(frozen=True)
class FedAvgClientConfig:
    """What a FedAvg process worker needs to run one client by itself."""

    work: FedAvgClientWork
    cid: int
    seed: int
    state_path: str


class FedAvgProcessPoolClientTrainer(
    _FedAvgTrainerMixin,
    ProcessPoolClientTrainer[
        FedAvgUplinkPackage,
        FedAvgDownlinkPackage,
        FedAvgClientConfig,
        FedAvgUplinkPackage,
    ],
):
    """FedAvg clients run in ``num_parallels`` persistent worker processes.

    ``state_dir`` is only used by the static `worker` when it is called
    directly (outside ``local_process``): it keeps each client's RNG state
    there as JSON. Under ``local_process`` the coordinator keeps those states
    in memory and nothing is written per client per round.
    """

    def __init__(
        self,
        model_selector: ModelSelector[Any],
        model_name: Any,
        state_dir: Path | str,
        dataset: FedAvgPartitionedDataset,
        device: str,
        num_clients: int,
        epochs: int,
        batch_size: int,
        lr: float,
        seed: int,
        num_parallels: int,
    ) -> None:
        self._setup(
            model_selector,
            model_name,
            dataset,
            device,
            num_clients,
            epochs,
            batch_size,
            lr,
            seed,
        )
        self.num_parallels = check_int("num_parallels", num_parallels)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop_event = None

    def get_client_config(self, cid: int) -> FedAvgClientConfig:
        return FedAvgClientConfig(
            self.as_client_work(), cid, self.seed, str(self.state_dir / f"{cid}.json")
        )

    @staticmethod
    def worker(
        config: FedAvgClientConfig,
        payload: FedAvgDownlinkPackage,
        device: str,
        stop_event: Any,
        *,
        shm_buffer: FedAvgUplinkPackage | None = None,
    ) -> FedAvgUplinkPackage:
        package = _run_detached(
            config.work,
            config.cid,
            device,
            payload,
            stop_event,
            config.seed,
            config.state_path,
        )
        if shm_buffer is None:
            return package
        shm_buffer.model_parameters.copy_(package.model_parameters)
        light: FedAvgUplinkPackage = process_tensors_in_object(package, "replace")
        return light

    def prepare_uplink_package_buffer(self) -> FedAvgUplinkPackage:
        model = build_model(self.model_selector, self.model_name, 0)
        return FedAvgUplinkPackage(-1, torch.zeros_like(serialize_model(model)), 0)

    def convert_buffer_to_uplink(
        self, buffer: FedAvgUplinkPackage
    ) -> FedAvgUplinkPackage:
        return buffer


def _run_detached(
    work: FedAvgClientWork,
    cid: int,
    device: str,
    payload: FedAvgDownlinkPackage,
    stop_event: Any,
    seed: int,
    state_path: str | None,
) -> FedAvgUplinkPackage:
    """Run one client without the coordinator (the BlazeFL ``worker`` entry)."""
    import structlog

    rng = create_client_rng_suite(seed, cid)
    if state_path is not None and os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            rng.set_state(RNGSuiteState.from_dict(json.load(f)))
    ctx = ClientContext(
        cid=cid,
        round=-1,
        slot=0,
        device=device,
        rng=rng,
        state={},
        stop_event=stop_event if stop_event is not None else _NeverStop(),
        log=structlog.get_logger("blazefl.client").bind(cid=cid),
        cache={},
    )
    package = work(ctx, payload)
    if state_path is not None:
        tmp = f"{state_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(rng.get_state().to_dict(), f)
        os.replace(tmp, state_path)
    return package


@dataclass(frozen=True)
class _NeverStop:
    flag: bool = field(default=False)

    def is_set(self) -> bool:
        return self.flag
