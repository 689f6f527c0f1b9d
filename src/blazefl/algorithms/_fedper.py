"""FedPer and FedRep: a shared body, a classifier head each client keeps.

- FedPer (Arivazhagan et al., "Federated Learning with Personalization
  Layers", arXiv:1912.00818, 2019): clients train the whole model by local
  SGD; the server averages the base (body) layers only, and each client keeps
  its own personalization (head) layers.
- FedRep (Collins et al., "Exploiting Shared Representations for
  Personalized Federated Learning", ICML 2021): each round a client first
  trains its head for ``head_epochs`` epochs with the body frozen, then the
  body for the run's local epochs with the head frozen; the server averages
  the bodies.

The head is the model's last ``head_tensors`` parameter tensors (2: the last
linear layer's weight and bias, the papers' choice for small nets).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._local_parts import LocalParts, head_entries
from blazefl.algorithms._settings import check_count, setting

if TYPE_CHECKING:
    from torch import nn

    from blazefl.algorithms._base import LocalTraining
    from blazefl.sim import ClientContext

__all__ = ["FedPer", "FedRep", "frozen_except"]


@dataclass(frozen=True)
class FedPer(LocalParts):
    """FedAvg over the body; the head (last ``head_tensors`` parameter
    tensors) is trained and kept by each client.

    :param head_tensors: how many trailing parameter tensors form the head.
    """

    name: ClassVar[str] = "fedper"
    head_tensors: int = setting(
        2, check_count, "FedPer/FedRep: trailing parameter tensors kept local."
    )

    def local_entries(self, model: nn.Module) -> list[str]:
        return head_entries(model, self.head_tensors)


@contextmanager
def frozen_except(model: nn.Module, names: set[str]) -> Iterator[None]:
    """Within the block, only the parameters named in ``names`` train
    (`blazefl.training.train` skips those without ``requires_grad``)."""
    frozen = [
        (p, p.requires_grad) for n, p in model.named_parameters() if n not in names
    ]
    for p, _ in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, was in frozen:
            p.requires_grad_(was)


@dataclass(frozen=True)
class FedRep(FedPer):
    """FedPer's split, trained alternately: the head for ``head_epochs``
    epochs (body frozen), then the body for the run's epochs (head frozen).

    :param head_epochs: local epochs of head training per round (the paper
        uses many head steps per body step; 5 trains the built-in data).
    """

    name: ClassVar[str] = "fedrep"
    head_epochs: int = setting(
        5, check_count, "FedRep: local epochs of head training per round."
    )

    def train_local(self, ctx: ClientContext, local: LocalTraining) -> float:
        head = set(self.local_entries(local.model))
        body = {n for n, _ in local.model.named_parameters()} - head
        with frozen_except(local.model, head):
            replace(local, epochs=self.head_epochs).run()
        with frozen_except(local.model, body):
            return local.run().loss
