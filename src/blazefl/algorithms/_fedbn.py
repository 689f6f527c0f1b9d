"""FedBN (Li et al., "FedBN: Federated Learning on Non-IID Features via Local
Batch Normalization", ICLR 2021): BatchNorm stays on the client.

For clients whose inputs differ in distribution (feature shift: other
scanners, other lighting, the built-in ``--feature-shift``), each client
keeps its BatchNorm layers' affine parameters and running statistics; every
other parameter is averaged as in FedAvg. It needs a model with BatchNorm
(the zoo's ``cnn_bn``) and has no hyperparameters of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._local_parts import LocalParts, batchnorm_entries

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FedBN"]


@dataclass(frozen=True)
class FedBN(LocalParts):
    """FedAvg over everything but the BatchNorm layers, which each client
    trains and keeps (weight, bias, running mean and variance)."""

    name: ClassVar[str] = "fedbn"

    def local_entries(self, model: nn.Module) -> list[str]:
        return batchnorm_entries(model)
