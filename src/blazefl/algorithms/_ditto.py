"""Ditto (Li, Hu, Beirami and Smith, "Ditto: Fair and Robust Federated
Learning Through Personalization", ICML 2021).

Each client keeps a personal model vᵢ (in ``ctx.state["v"]``, started from
the first global model it receives). In a round it does FedAvg's local
update of the global model w (uploaded and averaged as in FedAvg), and
trains vᵢ for ``personal_epochs`` epochs on its loss plus (λ/2)·‖vᵢ − wᵗ‖²,
wᵗ the round's broadcast. λ = 0 is purely local training; a large λ keeps
vᵢ near the global model. The paper tunes λ in {0.05, 0.1, 0.2, 0.5, 1, 2}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._aggregation import aggregate_model
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate, LocalTraining
from blazefl.algorithms._scaffold import parameter_views
from blazefl.algorithms._settings import check_count, check_non_negative, setting

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.sim import ClientContext

__all__ = ["Ditto"]


@dataclass(frozen=True)
class Ditto(Algorithm):
    """FedAvg for the global model, a λ-proximal personal model per client.

    :param lam: λ ≥ 0, the pull of vᵢ towards the global model.
    :param personal_epochs: local epochs on vᵢ per round.
    """

    name: ClassVar[str] = "ditto"
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True
    personalized: ClassVar[bool] = True
    client_state_vectors: ClassVar[int] = 1  # vᵢ
    lam: float = setting(
        0.1,
        check_non_negative,
        "Ditto: pull λ >= 0 of vᵢ to the global model.",
        cli="--ditto-lambda",
    )
    personal_epochs: int = setting(
        1, check_count, "Ditto: local epochs on the personal model per round."
    )

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        from blazefl.core import deserialize_model

        result = local.run()  # the global model's update, as in FedAvg
        ctx.metrics["loss"] = result.loss
        w = local.params()
        deserialize_model(local.model, ctx.state.get("v", broadcast.params))
        anchor = [
            t.to(local.device) for t in parameter_views(local.model, broadcast.params)
        ]
        lam = self.lam

        def hook(model: nn.Module) -> None:
            for p, g in zip(model.parameters(), anchor, strict=True):
                if p.grad is not None:
                    p.grad.add_(p.detach() - g, alpha=lam)

        personal = replace(local, epochs=self.personal_epochs).run(before_step=hook)
        ctx.metrics["personal_loss"] = personal.loss
        ctx.state["v"] = local.params()
        return ClientUpdate(ctx.cid, w, local.num_samples)

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor | None:
        v: torch.Tensor | None = ctx.state.get("v")
        return broadcast.params.clone() if v is None else v.clone()

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        return aggregate_model(params, updates)
