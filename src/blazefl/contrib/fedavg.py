"""FedAvg, with BlazeFL 3.0's server handler and its three client trainers.

Adapters, not a second FedAvg: `FedAvgBaseServerHandler` is BlazeFL's face of
a `FederatedServer(FedAvg())`, and the trainers run a
`FederatedClient(FedAvg())` on the blazefl engine (``_fedavg_client``). The
local training is `blazefl.training.train`, the one loop every algorithm uses.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Generic, TypeVar, overload

import torch

from blazefl._exceptions import ConfigurationError
from blazefl._prechecked import check_unless_prechecked, prechecked
from blazefl._validate import check_int, check_ratio, sampled_per_round
from blazefl.algorithms import ClientUpdate, FederatedServer
from blazefl.algorithms._fedavg import BlazeFLFedAvg
from blazefl.algorithms._server import check_like_model
from blazefl.contrib._fedavg_client import (
    FedAvgBaseClientTrainer,
    FedAvgClientConfig,
    FedAvgClientWork,
    FedAvgDownlinkPackage,
    FedAvgPartitionedDataset,
    FedAvgPartitionType,
    FedAvgProcessPoolClientTrainer,
    FedAvgThreadPoolClientTrainer,
    FedAvgUplinkPackage,
)
from blazefl.core import ModelSelector, PartitionedDataset, serialize_model
from blazefl.reproducibility import RNGSuite
from blazefl.training import evaluate

#: BlazeFL 3.0's phrases, which its users' tests match (``match=r"^..."``);
#: ours may add guidance after them, never change them.
POSITIVE_WORDING = "{name} must be positive, got {value!r}"
RATIO_WORDING = "{name} must be in the interval (0, 1], got {value!r}"
EMPTY_TEST_LOADER = "test_loader must yield at least one sample for evaluation"

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

T = TypeVar("T")


class _OnServer(Generic[T]):
    """A BlazeFL handler attribute that lives on the server, under its own name
    there: reading and setting it reads and sets the server's."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, handler: None, owner: object = None) -> _OnServer[T]: ...
    @overload
    def __get__(self, handler: FedAvgBaseServerHandler, owner: object = None) -> T: ...
    def __get__(
        self, handler: FedAvgBaseServerHandler | None, owner: object = None
    ) -> T | _OnServer[T]:
        if handler is None:  # looked up on the class (help(), inspect)
            return self
        value: T = getattr(handler.server, self.name)
        return value

    def __set__(self, handler: FedAvgBaseServerHandler, value: T) -> None:
        setattr(handler.server, self.name, value)


class FedAvgBaseServerHandler:
    """The FedAvg server: samples clients, broadcasts, averages by data size.

    BlazeFL's face of ``server``, a `FederatedServer(FedAvg())` that holds the
    model, the round, the sampling RNG and the aggregation: it samples
    ``int(num_clients * sample_ratio)`` clients per round without replacement
    (sorted) from its own RNG seeded by ``seed``, never the global one, and
    builds the initial global model from ``seed`` as well. The handler speaks
    BlazeFL's packages and keeps BlazeFL's calls: `load` runs `check_uplink`
    and, on the round's last upload, `load_round` and `global_update`, so a
    subclass overriding one of them is still called. Checkpoints
    (`state_dict`) are the server's.
    """

    global_round = _OnServer[int]("rounds")
    num_clients = _OnServer[int]("num_clients")
    num_clients_per_round = _OnServer[int]("clients_per_round")
    batch_size = _OnServer[int]("eval_batch_size")
    seed = _OnServer[int]("seed")
    dataset = _OnServer[PartitionedDataset[Any]]("dataset")
    device = _OnServer[str]("device")
    model = _OnServer[torch.nn.Module]("model")
    rng_suite = _OnServer[RNGSuite]("rng")
    round = _OnServer[int]("round")

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
        # Checked here, before the server, for BlazeFL's names and phrases;
        # the server checks the rest in its own words.
        check_int("global_round", global_round, wording=POSITIVE_WORDING)
        check_int("num_clients", num_clients, wording=POSITIVE_WORDING)
        wording = RATIO_WORDING
        if isinstance(sample_ratio, int | float) and 1 < sample_ratio < math.inf:
            wording += (
                f": it would sample {int(num_clients * sample_ratio)} clients a "
                f"round but there are only num_clients={num_clients}"
            )
        ratio = check_ratio("sample_ratio", sample_ratio, wording=wording)
        if sampled_per_round(num_clients, ratio) < 1:
            raise ConfigurationError(
                "sample_ratio selects zero clients per round; increase "
                f"sample_ratio or num_clients (got num_clients={num_clients}, "
                f"sample_ratio={sample_ratio})"
            )
        check_int("batch_size", batch_size)
        self.server = FederatedServer(
            BlazeFLFedAvg(),
            model_selector,
            model_name,
            dataset=dataset,
            num_clients=num_clients,
            rounds=global_round,
            sample_ratio=sample_ratio,
            seed=seed,
            device=device,
            eval_batch_size=batch_size,
        )
        self.model_selector = model_selector
        self.model_name = model_name
        self.sample_ratio = sample_ratio
        self.client_buffer_cache: list[FedAvgUplinkPackage] = []

    def sample_clients(self) -> list[int]:
        return self.server.sample_clients()

    def is_stopped(self) -> bool:
        return self.server.is_stopped()

    def downlink_package(self) -> FedAvgDownlinkPackage:
        # Read from the model, not the server's vector: BlazeFL users may
        # change the model between rounds, and a model's integer buffers
        # (BatchNorm's num_batches_tracked) hold the average truncated.
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
        params = self.server.params
        check_like_model(
            who,
            "model_parameters",
            package.model_parameters,
            tuple(params.shape),
            params.dtype,
        )
        size = getattr(package, "data_size", None)
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ConfigurationError(
                f"{who} reported data_size={size!r}; an upload must come from an "
                "integer number >= 1 of training samples"
            )

    def load(self, payload: FedAvgUplinkPackage) -> bool:
        """Take one upload; aggregate once the round's sampled count arrived."""
        try:
            check_unless_prechecked(self.check_uplink, payload)
        except ConfigurationError:
            self.client_buffer_cache = []  # a rejected round leaves nothing behind
            raise
        self.client_buffer_cache.append(payload)
        if len(self.client_buffer_cache) == self.num_clients_per_round:
            with prechecked():  # each upload was checked as it came in
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
            check_unless_prechecked(self.check_uplink, package)
        self.server.apply_updates(
            [ClientUpdate(p.cid, p.model_parameters, p.data_size) for p in buffer]
        )

    @staticmethod
    def evaluate(
        model: torch.nn.Module, test_loader: Any, device: str
    ) -> tuple[float, float]:
        """`blazefl.training.evaluate`, refusing an empty loader in BlazeFL's
        phrase (then ours)."""
        try:
            return evaluate(model, test_loader, device)
        except ConfigurationError as exc:
            if "yielded no sample" not in str(exc):
                raise
            raise ConfigurationError(f"{EMPTY_TEST_LOADER}: {exc}") from None

    def get_summary(self) -> dict[str, float]:
        loader = self.dataset.get_dataloader(
            FedAvgPartitionType.TEST, None, self.batch_size, None
        )
        loss, acc = self.evaluate(self.model, loader, self.device)
        return {"server_acc": acc, "server_loss": loss}

    def state_dict(self) -> dict[str, Any]:
        """The server's checkpoint state (`FederatedServer.state_dict`)."""
        return self.server.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; uploads of the round in flight are dropped."""
        self.server.load_state_dict(state)
        self.client_buffer_cache = []
