"""Local fine-tuning after FedAvg: the personalization baseline.

FedAvg trains the global model; at evaluation each client fine-tunes a copy
of it for ``finetune_epochs`` epochs of SGD on its own training data and is
measured with the result (Wang et al., "Federated Evaluation of On-device
Personalization", arXiv:1910.10252, 2019; Yu, Bagdasaryan and Shmatikov,
"Salvaging Federated Learning by Local Adaptation", arXiv:2002.04758,
2020). Nothing is kept on the client between rounds: the fine-tuned model
exists only while it is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from blazefl._validate import check_int
from blazefl.algorithms._base import Broadcast, LocalTraining
from blazefl.algorithms._fedavg import FedAvg
from blazefl.algorithms._settings import setting

if TYPE_CHECKING:
    import torch

    from blazefl.sim import ClientContext

__all__ = ["Finetune"]


@dataclass(frozen=True)
class Finetune(FedAvg):
    """FedAvg, personalized at evaluation by local fine-tuning.

    :param finetune_epochs: epochs of fine-tuning (0: the global model).
    """

    name: ClassVar[str] = "finetune"
    personalized: ClassVar[bool] = True
    finetune_epochs: int = setting(
        1,
        partial(check_int, minimum=0),
        "Finetune: local epochs of fine-tuning at evaluation (0: none).",
    )

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor | None:
        if self.finetune_epochs == 0:
            return broadcast.params.clone()
        replace(local, epochs=self.finetune_epochs).run()
        return local.params()
