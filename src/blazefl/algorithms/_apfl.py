"""APFL (Deng, Kamani and Mahdavi, "Adaptive Personalized Federated
Learning", arXiv:2003.13461, 2020).

Each client keeps a local model vᵢ and a mixing weight αᵢ (in ``ctx.state``);
its personalized model is v̄ᵢ = αᵢ·vᵢ + (1 − αᵢ)·w. Every local step, on the
same batch, it takes an SGD step on the global copy w (uploaded and averaged
as in FedAvg), a step on vᵢ along ∇ᵥ f(v̄ᵢ) = αᵢ·∇f(v̄ᵢ), and, when
``mix_lr`` > 0, a step on αᵢ along ⟨vᵢ − w, ∇f(v̄ᵢ)⟩, projected on [0, 1]
(adaptive α, the paper's Section 3). ``mix_lr = 0`` keeps α fixed at
``mix``; the paper reports α in {0.25, 0.5, 0.75} and adaptive α.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._aggregation import aggregate_model
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate, LocalTraining
from blazefl.algorithms._settings import check_fraction, check_non_negative, setting

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.sim import ClientContext
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["APFL", "state_views"]


def state_views(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of ``flat`` (a `serialize_model` vector) by ``state_dict`` name."""
    views = {}
    offset = 0
    for name, tensor in model.state_dict().items():
        views[name] = flat[offset : offset + tensor.numel()].view(tensor.shape)
        offset += tensor.numel()
    if offset != flat.numel():
        raise ConfigurationError(
            f"vector has {flat.numel()} elements; the model's state has {offset}"
        )
    return views


@dataclass(frozen=True)
class APFL(Algorithm):
    """FedAvg for w; per client, a local vᵢ and a mix αᵢ trained alongside.

    :param mix: α, the initial (or, with ``mix_lr = 0``, fixed) weight of the
        local model in the personalized one, in [0, 1].
    :param mix_lr: the learning rate of α (0: fixed α).
    """

    name: ClassVar[str] = "apfl"
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True
    personalized: ClassVar[bool] = True
    client_state_vectors: ClassVar[int] = 1  # vᵢ (and the scalar αᵢ)
    mix: float = setting(
        0.25, check_fraction, "APFL: weight α of the local model, in [0, 1]."
    )
    mix_lr: float = setting(
        0.1, check_non_negative, "APFL: learning rate of α (0: α stays fixed)."
    )

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        import torch.nn.functional as F
        from torch.func import functional_call

        model = local.model
        v = ctx.state.get("v", broadcast.params).clone().to(local.device)
        alpha = float(ctx.state["alpha"]) if "alpha" in ctx.state else self.mix
        views = state_views(model, v)
        names = [n for n, _ in model.named_parameters()]
        buffer_names = [n for n in views if n not in set(names)]
        params = list(model.parameters())
        loss_sum, samples = 0.0, 0
        stop = local.stop_event
        model.train()
        try:
            for _ in range(local.epochs):
                if stop is not None and stop.is_set():
                    break
                for x, y in local.loader:
                    if stop is not None and stop.is_set():
                        break
                    x, y = x.to(local.device), y.to(local.device)
                    model.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(x), y)
                    torch.autograd.backward(loss)
                    a = torch.tensor(alpha, requires_grad=True)
                    # Copies, not views of v: BatchNorm updates its statistics
                    # in place during the forward, and views of one vector
                    # share one autograd version counter.
                    leaves = [views[n].clone().requires_grad_() for n in names]
                    buffers = {n: views[n].clone() for n in buffer_names}
                    mixed = {
                        n: a * vn + (1 - a) * p.detach()
                        for n, vn, p in zip(names, leaves, params, strict=True)
                    }
                    out = functional_call(model, {**mixed, **buffers}, (x,))
                    grads = torch.autograd.grad(F.cross_entropy(out, y), [a, *leaves])
                    with torch.no_grad():
                        for p in params:
                            if p.grad is not None:
                                p.add_(p.grad, alpha=-local.lr)
                        for n, g in zip(names, grads[1:], strict=True):
                            views[n].add_(g, alpha=-local.lr)
                        for n, t in buffers.items():
                            views[n].copy_(t)
                    if self.mix_lr > 0:
                        step = self.mix_lr * float(grads[0])
                        alpha = min(1.0, max(0.0, alpha - step))
                    loss_sum += float(loss.detach()) * y.shape[0]
                    samples += y.shape[0]
        finally:
            model.zero_grad(set_to_none=True)
        ctx.state["v"] = v.cpu()
        ctx.state["alpha"] = torch.tensor(alpha, dtype=torch.float64)
        ctx.metrics["loss"] = loss_sum / samples if samples else 0.0
        ctx.metrics["alpha"] = alpha
        return ClientUpdate(ctx.cid, local.params(), local.num_samples)

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor | None:
        w = broadcast.params
        v: torch.Tensor | None = ctx.state.get("v")
        if v is None:
            return w.clone()
        alpha = float(ctx.state["alpha"])
        return alpha * v + (1 - alpha) * w

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        return aggregate_model(params, updates)
