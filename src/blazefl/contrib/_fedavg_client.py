"""BlazeFL's FedAvg client side: its packages, its work, its three trainers.

All three trainers (sequential, thread pool, process pool) run the *same*
client work, `FedAvgClientWork` (a `FederatedClient(FedAvg())` speaking
BlazeFL's packages), with each client's RNG suite kept by the coordinator, so
for one seed they produce bitwise-identical global models. A BlazeFL
``worker`` called directly runs that work through `execute_job`, the job
runner every executor uses.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import torch

from blazefl._validate import check_int, check_number
from blazefl._versions import version_of
from blazefl.algorithms import Broadcast, FedAvg, FederatedClient
from blazefl.algorithms._server import check_federation_size
from blazefl.core import (
    ModelSelector,
    PartitionedDataset,
    ProcessPoolClientTrainer,
    ThreadPoolClientTrainer,
    process_tensors_in_object,
    serialize_model,
)
from blazefl.models import build_model
from blazefl.reproducibility import RNGSuiteState, create_client_rng_suite
from blazefl.sim._context import ClientContext, ClientState
from blazefl.sim._jobs import ClientJob, execute_job
from blazefl.sim._sync import run_local_process

__all__ = [
    "FedAvgBaseClientTrainer",
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

    def __blazefl_version__(self) -> Hashable:
        """The data set's version (see `blazefl._versions`)."""
        return version_of(self.dataset)

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


@dataclass(frozen=True)
class FedAvgClientConfig:
    """What a FedAvg process worker needs to run one client by itself."""

    work: FedAvgClientWork
    cid: int
    seed: int
    state_path: str


class _FedAvgTrainer:
    """What the three FedAvg trainers share: their setup and their client work.

    The sequential trainer's constructor is this one; the pool trainers add
    their own arguments around it.
    """

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


class FedAvgBaseClientTrainer(_FedAvgTrainer):
    """FedAvg clients run one after another in this process."""

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
    _FedAvgTrainer,
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
        super().__init__(
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


class FedAvgProcessPoolClientTrainer(
    _FedAvgTrainer,
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
        super().__init__(
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
    """Run one client without the coordinator (a BlazeFL ``worker`` called
    directly), through the executors' job runner.

    The client's RNG suite is its first-round stream, or the one ``state_path``
    kept from the previous call (and is kept there again). What the work
    raises is raised here as it was, as BlazeFL's ``worker`` would.
    """
    rng = create_client_rng_suite(seed, cid)
    if state_path is not None and os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            rng.set_state(RNGSuiteState.from_dict(json.load(f)))
    raised: list[Exception] = []

    def run(ctx: ClientContext, payload: Any, arg: Any) -> FedAvgUplinkPackage:
        try:
            return work(ctx, payload)
        except Exception as exc:  # execute_job keeps only its text
            raised.append(exc)
            raise

    job = ClientJob(
        round=-1, slot=0, cid=cid, device=device, state=ClientState(rng.get_state())
    )
    outcome = execute_job(
        run,
        job,
        payload,
        stop_event=threading.Event() if stop_event is None else stop_event,
        cache={},
        worker="detached",
        contain_exits=False,  # a direct call raises what the work raised
    )
    if raised:
        raise raised[0]
    if outcome.error is not None:  # e.g. the work wrote into the payload
        raise outcome.error.exception()
    if state_path is not None and outcome.state is not None:
        tmp = f"{state_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(outcome.state.rng.to_dict(), f)
        os.replace(tmp, state_path)
    package: FedAvgUplinkPackage = outcome.result
    return package
