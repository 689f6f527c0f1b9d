"""The BlazeFL 3.0 plug-in points: what a user's server, trainer, model
selector and partitioned data set must provide.

These are structural types (`typing.Protocol`): user classes need not inherit
from them. All are ``runtime_checkable`` so that code receiving a user object
can check at construction that the methods exist (``isinstance`` checks names
only, not signatures). The type variables carry the variance each protocol
needs: the downlink type is covariant for the server (it only produces it) and
contravariant for the trainer (it only consumes it); the uplink type travels in
``list[...]`` on both sides and is therefore invariant.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "BaseClientTrainer",
    "BaseServerHandler",
    "ModelSelector",
    "PartitionedDataset",
]

# Invariant: it appears inside ``list[...]``, which is invariant.
UplinkPackage = TypeVar("UplinkPackage")
DownlinkPackage_co = TypeVar("DownlinkPackage_co", covariant=True)
DownlinkPackage_contra = TypeVar("DownlinkPackage_contra", contravariant=True)
ModelName_contra = TypeVar("ModelName_contra", contravariant=True)
PartitionType_contra = TypeVar("PartitionType_contra", contravariant=True)


@runtime_checkable
class BaseServerHandler(Protocol[UplinkPackage, DownlinkPackage_co]):
    """The server side of an algorithm: sampling, broadcast and aggregation.

    Written as ``BaseServerHandler[UplinkPackage, DownlinkPackage]``. Each round
    the loop calls `sample_clients`, then `downlink_package`, hands the result
    to the trainer, and feeds every upload to `load`, until `is_stopped`.
    """

    def downlink_package(self) -> DownlinkPackage_co:
        """Return the message broadcast to this round's clients.

        Called once per round, after `sample_clients`.
        """
        ...

    def sample_clients(self) -> list[int]:
        """Return the ids of the clients that train this round.

        Called once at the start of every round.
        """
        ...

    def is_stopped(self) -> bool:
        """Return True when training is over; checked before every round."""
        ...

    def global_update(self, buffer: list[UplinkPackage]) -> None:
        """Aggregate one round's uploads into the global model.

        Called by `load` when the upload completing the round arrives.
        """
        ...

    def load(self, payload: UplinkPackage) -> bool:
        """Take one client's upload; return True when it completed the round.

        Called once per upload. On the upload that completes the round the
        handler runs `global_update` itself before returning True.
        """
        ...


@runtime_checkable
class BaseClientTrainer(Protocol[UplinkPackage, DownlinkPackage_contra]):
    """The client side of an algorithm: local training for a set of clients.

    Written as ``BaseClientTrainer[UplinkPackage, DownlinkPackage]``. Each round
    the loop calls `local_process` with the broadcast and the sampled ids, then
    collects the results with `uplink_package`.
    """

    def local_process(
        self, payload: DownlinkPackage_contra, cid_list: list[int]
    ) -> None:
        """Train every client in ``cid_list`` from ``payload``.

        Called once per round with that round's broadcast and sampled ids; the
        results are kept until `uplink_package` collects them.
        """
        ...

    def uplink_package(self) -> list[UplinkPackage]:
        """Return the last `local_process` results, in ``cid_list`` order, and
        forget them.

        Called once per round, after `local_process`.
        """
        ...


@runtime_checkable
class ModelSelector(Protocol[ModelName_contra]):
    """Builds a model by name, so servers and clients share one model zoo."""

    def select_model(self, model_name: ModelName_contra) -> torch.nn.Module:
        """Return a new model for ``model_name``.

        Called when a server or trainer is constructed (and by workers that
        build their own copy), so it should create a fresh module each time.
        """
        ...


@runtime_checkable
class PartitionedDataset(Protocol[PartitionType_contra]):
    """A data set already split per client (and per split type, e.g. train/test).

    ``cid=None`` names the data not owned by any client, typically the
    server's global test set.
    """

    def get_dataset(self, type_: PartitionType_contra, cid: int | None) -> Dataset[Any]:
        """Return the dataset of client ``cid`` (or the shared one for None).

        Called by trainers when a client starts local work and by the server
        when it evaluates.
        """
        ...

    def set_dataset(
        self, type_: PartitionType_contra, cid: int | None, dataset: Dataset[Any]
    ) -> None:
        """Store ``dataset`` as client ``cid``'s data of kind ``type_``.

        Called while partitioning, before training starts.
        """
        ...

    def get_dataloader(
        self,
        type_: PartitionType_contra,
        cid: int | None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> DataLoader[Any]:
        """Return a DataLoader over `get_dataset`'s result.

        Called by trainers at the start of a client's local work; pass the
        client's ``RNGSuite.torch_cpu`` as ``generator`` so that shuffling is
        reproducible whatever thread or process runs the client.
        """
        ...
