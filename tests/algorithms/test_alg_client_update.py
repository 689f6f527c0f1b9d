"""Client updates against hand-computed trajectories.

`ConstantGradModel` has one weight and a gradient that does not depend on it
(−1 and −0.25 on the two fixed batches), so every local step, the proximal term
and SCAFFOLD's control variates can be followed by hand in exact binary
fractions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
from alg_fakes import ConstantGradModel, dataset, local_training, make_ctx, run
from torch import nn

from blazefl.algorithms import Broadcast, FedAvg, FedProx, LocalTraining, Scaffold
from blazefl.algorithms._fedprox import proximal_hook
from blazefl.core import serialize_model
from blazefl.training import TrainResult, train

EXACT = {"rtol": 0.0, "atol": 0.0}


def _broadcast(w: float, **extra: float) -> Broadcast:
    return Broadcast(
        0,
        torch.tensor([w]),
        {k: torch.tensor([v]) for k, v in extra.items()},
    )


def test_constant_grad_model_gradients() -> None:
    """The fake's gradients are −mean(x)/2 per batch whatever the weight: −1, −0.25."""
    model = ConstantGradModel(weight=7.0)
    assert serialize_model(model).numel() == 1
    seen: list[float] = []

    def record(m: nn.Module) -> None:
        seen.append(m.linear.weight.grad.item())  # type: ignore[union-attr]

    loader = local_training(model, epochs=1, lr=0.5).loader
    train(model, loader, epochs=1, lr=0.5, before_step=record)
    assert seen == [-1.0, -0.25]


# -- plain local SGD -----------------------------------------------------------


def test_default_client_update_is_plain_sgd() -> None:
    """FedAvg's client takes K plain SGD steps: 1 + 0.5·1 + 0.5·0.25 = 1.625."""
    ctx = make_ctx(cid=4)
    local = local_training(ConstantGradModel(1.0), epochs=1, lr=0.5)
    up = FedAvg().client_update(ctx, local, _broadcast(1.0))
    assert up.cid == 4
    assert up.num_samples == 3
    torch.testing.assert_close(up.params, torch.tensor([1.625]), **EXACT)
    assert ctx.metrics["loss"] == pytest.approx(0.6931471805599453)  # log 2
    assert ctx.state == {}


# -- FedProx ---------------------------------------------------------------------


def test_proximal_hook_adds_mu_times_distance_to_grads() -> None:
    """The FedProx hook turns every gradient g into g + μ·(w − w_global) exactly."""
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        model.bias.fill_(0.5)
    _, hook = proximal_hook(model, 0.25)  # anchors w_global = [1, 2, 3], 0.5
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 2.0, 0.5]]))
        model.bias.fill_(-1.5)
    model.weight.grad = torch.tensor([[0.5, -1.0, 0.25]])
    model.bias.grad = torch.tensor([1.0])
    hook(model)  # type: ignore[operator]
    # w − w_global = [1, 0, −2.5] and −2; times 0.25 = [0.25, 0, −0.625] and −0.5.
    torch.testing.assert_close(
        model.weight.grad, torch.tensor([[0.75, -1.0, -0.375]]), **EXACT
    )
    torch.testing.assert_close(model.bias.grad, torch.tensor([0.5]), **EXACT)


def test_proximal_hook_skips_parameters_without_grad() -> None:
    """A parameter with no gradient (frozen, unused) is left without one."""
    model = nn.Linear(2, 1)
    _, hook = proximal_hook(model, 1.0)
    model.weight.grad = torch.zeros(1, 2)
    hook(model)  # type: ignore[operator]
    assert model.bias.grad is None


def test_fedprox_local_trajectory() -> None:
    """FedProx steps w ← w − lr·(g + μ(w − w₀)): 1 → 1.5 → 1.5 → 1.875 → 1.78125."""
    # lr = 0.5, μ = 0.5, gradients −1, −0.25, −1, −0.25 (two epochs):
    #   step 1: w = 1,     prox 0         → 1 − 0.5·(−1)           = 1.5
    #   step 2: w = 1.5,   prox 0.25      → 1.5 − 0.5·(0)          = 1.5
    #   step 3: w = 1.5,   prox 0.25      → 1.5 − 0.5·(−0.75)      = 1.875
    #   step 4: w = 1.875, prox 0.4375    → 1.875 − 0.5·(0.1875)   = 1.78125
    ctx = make_ctx()
    local = local_training(ConstantGradModel(1.0), epochs=2, lr=0.5)
    up = FedProx(mu=0.5).client_update(ctx, local, _broadcast(1.0))
    torch.testing.assert_close(up.params, torch.tensor([1.78125]), **EXACT)
    assert up.num_samples == 3


def test_fedprox_with_mu_zero_equals_fedavg_bitwise() -> None:
    """FedProx(μ=0) and FedAvg give bitwise-equal models through a whole Simulation."""
    data = dataset()
    fedavg, _ = run(FedAvg(), data, rounds=3)
    fedprox, _ = run(FedProx(mu=0.0), data, rounds=3)
    assert torch.equal(fedprox.params, fedavg.params)
    # ... and the proximal term is live: a positive μ changes the result.
    strong, _ = run(FedProx(mu=1.0), data, rounds=3)
    assert not torch.equal(strong.params, fedavg.params)


# -- SCAFFOLD ----------------------------------------------------------------------


def test_scaffold_client_control_variate_update() -> None:
    """SCAFFOLD client: steps on g + c − cᵢ, then cᵢ⁺ = cᵢ − c + (x − y)/(K·lr)."""
    # x = 1, c = 0.25, cᵢ = 0.5 (correction −0.25), lr = 0.5, K = 4 steps with
    # gradients −1, −0.25, −1, −0.25:
    #   y = 1 + 0.5·(1.25 + 0.5 + 1.25 + 0.5) = 2.75
    #   cᵢ⁺ = 0.5 − 0.25 + (1 − 2.75)/(4·0.5) = −0.625  (the mean gradient)
    #   Δcᵢ = cᵢ⁺ − cᵢ = −1.125
    ctx = make_ctx(cid=2, state={"c": torch.tensor([0.5])})
    local = local_training(ConstantGradModel(1.0), epochs=2, lr=0.5)
    up = Scaffold(num_clients=4).client_update(ctx, local, _broadcast(1.0, c=0.25))
    torch.testing.assert_close(up.params, torch.tensor([2.75]), **EXACT)
    torch.testing.assert_close(ctx.state["c"], torch.tensor([-0.625]), **EXACT)
    assert set(up.extra) == {"delta_c"}
    torch.testing.assert_close(up.extra["delta_c"], torch.tensor([-1.125]), **EXACT)
    assert (up.cid, up.num_samples) == (2, 3)


def test_scaffold_client_first_round_starts_from_zero_variate() -> None:
    """A client with no stored cᵢ uses cᵢ = 0: with c = 0 it is plain SGD."""
    # y = 1 + 0.5·(1 + 0.25) = 1.625; cᵢ⁺ = (1 − 1.625)/(2·0.5) = −0.625.
    ctx = make_ctx()
    local = local_training(ConstantGradModel(1.0), epochs=1, lr=0.5)
    up = Scaffold(num_clients=4).client_update(ctx, local, _broadcast(1.0, c=0.0))
    torch.testing.assert_close(up.params, torch.tensor([1.625]), **EXACT)
    torch.testing.assert_close(ctx.state["c"], torch.tensor([-0.625]), **EXACT)
    torch.testing.assert_close(up.extra["delta_c"], torch.tensor([-0.625]), **EXACT)


def test_scaffold_client_without_steps_keeps_its_variate() -> None:
    """A client stopped before its first step keeps cᵢ and sends Δcᵢ = 0."""
    ctx = make_ctx(state={"c": torch.tensor([0.5])})
    local = local_training(ConstantGradModel(1.0), epochs=1, lr=0.5)
    local.stop_event.set()
    up = Scaffold(num_clients=4).client_update(ctx, local, _broadcast(1.0, c=0.25))
    torch.testing.assert_close(up.params, torch.tensor([1.0]), **EXACT)
    torch.testing.assert_close(ctx.state["c"], torch.tensor([0.5]), **EXACT)
    torch.testing.assert_close(up.extra["delta_c"], torch.tensor([0.0]), **EXACT)


class RecordingTraining(LocalTraining):
    """Local training that records what the algorithm's hook adds to each grad.

    The loss gradients are zeroed before the hook runs, so what is left in
    ``p.grad`` afterwards is exactly the hook's contribution.
    """

    added: list[torch.Tensor]

    def run(
        self, before_step: Callable[[nn.Module], None] | None = None
    ) -> TrainResult:
        assert before_step is not None
        self.added = []

        def hook(m: nn.Module) -> None:
            for p in m.parameters():
                assert p.grad is not None
                p.grad.zero_()
            before_step(m)
            self.added.extend(p.grad.clone() for p in m.parameters())  # type: ignore[union-attr]

        return LocalTraining.run(self, before_step=hook)


def test_scaffold_correction_skips_batchnorm_buffers() -> None:
    """With BatchNorm, the correction lands on parameters only, aligned by name."""
    # The state vector: linear.weight (2), bn.weight (2), bn.bias (2),
    # bn.running_mean (2), bn.running_var (2), bn.num_batches_tracked (1).
    model = nn.Sequential(nn.Linear(1, 2, bias=False), nn.BatchNorm1d(2))
    x = serialize_model(model)
    assert x.numel() == 11
    c = torch.arange(1.0, 12.0)  # a distinct correction per element; cᵢ = 0
    inputs = (torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([0, 1, 0]))
    local = RecordingTraining(
        model, [inputs], 1, 0.1, "cpu", threading.Event(), num_samples=3
    )
    Scaffold(num_clients=2).client_update(make_ctx(), local, Broadcast(0, x, {"c": c}))
    # linear.weight gets c[0:2], bn.weight c[2:4], bn.bias c[4:6]; buffers none.
    added = [t.flatten().tolist() for t in local.added]
    assert added == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
