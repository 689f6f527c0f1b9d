"""Cohort training: K clients of one model trained as one batched computation.

`FederatedClient.as_cohort` returns a `CohortTrainer` that `CohortExecutor`
hands chunks of a round's sampled clients. The clients' parameters are stacked
along a leading cohort axis and every local SGD step of all of them is one
``torch.func.vmap`` of ``grad`` over ``functional_call``, so a step of K small
clients costs about one step of one client instead of K (the Python and
dispatch overhead per step, not the arithmetic, dominates small models).

Each client keeps its own semantics: its own batches in the order its RNG
suite draws them (`blazefl.algorithms._cohort_data`), its own number of steps
(clients are ordered by steps within the chunk, so the clients still training
at step s are a prefix of the stack and finished clients are simply not
touched), its own loss weighting of a short last batch (a mask), and its own
persistent state (SCAFFOLD's cᵢ, stacked). The client updates that can be
batched are the built-in ones: plain SGD (FedAvg, FedAvgM, the FedOpt family,
whose server side is unchanged), FedProx's proximal term and SCAFFOLD's
control-variate correction. Anything else is refused when the simulation is
built (`cohort_refusal`), naming the executors that run it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import grad_and_value, vmap

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._base import Broadcast, ClientUpdate
from blazefl.algorithms._cohort_data import ClientBatches, client_batches
from blazefl.algorithms._cohort_model import (
    PER_CLIENT,
    auto_cohort_size,
    check_batchable,
    client_loss,
    cohort_refusal,
    layout_of,
    update_kind,
)
from blazefl.models import build_model
from blazefl.sim import CohortMember, CohortResult, StopFlag
from blazefl.sim._context import ClientState

if TYPE_CHECKING:
    from blazefl.algorithms._client import FederatedClient

__all__ = ["CohortTrainer", "cohort_refusal"]


def _stack(
    batches: Sequence[ClientBatches], total: int, b: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's ``(k, total, b, ...)`` inputs and targets.

    Clients of one shared data set are gathered with one index (steps a
    client does not take repeat its first row; they are never trained on).
    """
    first = batches[0].source
    if first is not None and all(
        c.source is not None and c.source[0] is first[0] and c.source[1] is first[1]
        for c in batches
    ):
        rows = torch.empty((len(batches), total, b), dtype=torch.int64)
        for i, c in enumerate(batches):
            assert c.rows is not None
            n = c.rows.shape[0]
            rows[i, :n] = c.rows
            rows[i, n:] = c.rows[0, 0]
        return first[0][rows], first[1][rows]
    pairs = [c.tensors() for c in batches]
    x0, y0 = pairs[0]
    xs = torch.zeros((len(batches), total, b, *x0.shape[2:]), dtype=x0.dtype)
    ys = torch.zeros((len(batches), total, b), dtype=y0.dtype)
    for i, (x, y) in enumerate(pairs):
        xs[i, : x.shape[0]] = x
        ys[i, : y.shape[0]] = y
    return xs, ys


class CohortTrainer:
    """Trains chunks of a `FederatedClient`'s clients as one batched computation.

    Made by `FederatedClient.as_cohort`; `CohortExecutor` calls `train` with
    one chunk at a time (possibly several chunks on several threads: each call
    uses its own model copy from the worker's cache).
    """

    def __init__(self, client: FederatedClient) -> None:
        model = build_model(client.model_selector, client.model_name)
        reason = cohort_refusal(client, model)
        if reason is not None:
            raise ConfigurationError(
                f"cohort execution cannot run this client work: {reason}. Run it "
                f"on a per-client executor ({PER_CLIENT})"
            )
        self._client = client
        self._kind = update_kind(client.algorithm)
        self._layout = layout_of(model)
        check_batchable(self._client, model, self._layout)

    def cohort_size(self) -> int:
        """An automatic chunk size (`auto_cohort_size`)."""
        return auto_cohort_size(self._client, self._layout)

    def train(
        self,
        members: Sequence[CohortMember],
        payload: Any,
        *,
        stop_event: StopFlag,
        cache: dict[str, Any],
    ) -> list[CohortResult]:
        """Train ``members`` (slot order) from ``payload``; one result each."""
        if not isinstance(payload, Broadcast):
            raise ConfigurationError(
                f"the cohort executor expects a Broadcast payload, got {payload!r}"
            )
        results = [CohortResult() for _ in members]
        ready: list[tuple[int, Any, Any]] = []  # (position, batches, rng state)
        for position, member in enumerate(members):
            try:
                ready.append((position, *self._prepare(member)))
            except Exception as exc:  # that client's slot fails, not the chunk
                results[position].error = exc
        if ready:
            self._train_ready(members, payload, ready, results, stop_event, cache)
        return results

    def _prepare(self, member: CohortMember) -> tuple[Any, Any]:
        client = self._client
        cid = member.job.cid
        num_samples = len(client.dataset.get_dataset("train", cid))
        if num_samples == 0:
            raise ConfigurationError(
                f"client {cid} has no training samples (its 'train' partition "
                "is empty); every sampled client needs at least one: give it "
                "data, use fewer clients or a partition with a minimum size"
            )
        rng = member.state.rng
        generator = torch.Generator()
        generator.set_state(
            torch.frombuffer(bytearray(rng.torch_cpu), dtype=torch.uint8)
        )
        batches = client_batches(
            client.dataset,
            cid,
            generator,
            epochs=client.epochs,
            batch_size=client.batch_size,
        )
        new_rng = replace(rng, torch_cpu=generator.get_state().numpy().tobytes())
        return batches, new_rng

    def _model(self, cache: dict[str, Any], device: str) -> nn.Module:
        key = ("blazefl-cohort-model", str(self._client.model_name), device)
        model = cache.get(key)  # type: ignore[call-overload]
        if model is None:
            model = build_model(self._client.model_selector, self._client.model_name)
            model = model.to(device)
            cache[key] = model  # type: ignore[index]
        return model  # type: ignore[no-any-return]

    def _train_ready(
        self,
        members: Sequence[CohortMember],
        broadcast: Broadcast,
        ready: list[tuple[int, Any, Any]],
        results: list[CohortResult],
        stop_event: StopFlag,
        cache: dict[str, Any],
    ) -> None:
        client, layout = self._client, self._layout
        device = members[ready[0][0]].job.device
        model = self._model(cache, device)
        # Longest first: the clients still training at step s are a prefix.
        ready = sorted(ready, key=lambda r: -len(r[1].counts))
        k = len(ready)
        steps = [len(b.counts) for _, b, _ in ready]
        total = steps[0]
        b = client.batch_size
        xs, ys = _stack([r[1] for r in ready], total, b)
        counts = torch.tensor(
            [r[1].counts + [0] * (total - len(r[1].counts)) for r in ready],
            dtype=torch.int64,
        )
        xs, ys = xs.to(device), ys.to(device)
        mask = (torch.arange(b).view(1, 1, b) < counts.unsqueeze(2)).to(layout.dtype)
        mask = mask.to(device)
        count_f = counts.clamp(min=1).to(layout.dtype).to(device)

        x0 = broadcast.params.to(device)
        views = {
            name: x0[off : off + shape.numel()].view(shape)
            for name, off, shape in zip(
                layout.names, layout.offsets, layout.shapes, strict=True
            )
        }
        params = {
            n: views[n].unsqueeze(0).expand(k, *views[n].shape).clone()
            for n in layout.names
            if n in layout.trainable
        }
        fixed = {n: views[n] for n in layout.names if n not in layout.trainable}
        correction = self._scaffold_correction(members, broadcast, ready, views)
        mu = float(client.algorithm.mu) if self._kind == "fedprox" else 0.0  # type: ignore[attr-defined]

        def one_client(p: Any, x: Any, y: Any, m: Any, c: Any) -> torch.Tensor:
            return client_loss(model, p, fixed, x, y, m, c)

        step = vmap(grad_and_value(one_client), in_dims=(0, 0, 0, 0, 0))
        loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        done = [0] * k
        was_training = model.training
        model.train()
        try:
            for s in range(total):
                if stop_event.is_set():
                    break
                a = sum(1 for n in steps if n > s)
                live = {n: t[:a] for n, t in params.items()}
                grads, loss = step(
                    live, xs[:a, s], ys[:a, s], mask[:a, s], count_f[:a, s]
                )
                with torch.no_grad():
                    for name, p in live.items():
                        g = grads[name]
                        if mu:
                            g = torch.add(g, p - views[name], alpha=mu)
                        if correction is not None:
                            g = g + correction[name][:a]
                        p.copy_(torch.add(p, g, alpha=-client.lr))
                    loss_sum[:a] += loss.detach().to(torch.float64) * counts[:a, s].to(
                        device
                    )
                for row in range(a):
                    done[row] += 1
        finally:
            model.train(was_training)
        flat = self._flatten(params, views, k)
        for row, (position, batches, new_rng) in enumerate(ready):
            member = members[position]
            samples = sum(batches.counts[: done[row]])
            mean_loss = loss_sum[row].item() / samples if samples else 0.0
            num_samples = sum(batches.counts) // client.epochs
            y = flat[row].clone()
            data = member.state.data
            extra: dict[str, torch.Tensor] = {}
            if self._kind == "scaffold":
                extra = self._scaffold_state(data, broadcast, y, done[row])
            metrics = {"loss": mean_loss, "num_samples": float(num_samples)}
            update = ClientUpdate(
                member.job.cid, y, num_samples, extra=extra, metrics=dict(metrics)
            )
            results[position] = CohortResult(
                result=update, metrics=metrics, state=ClientState(new_rng, data)
            )

    def _flatten(
        self, params: dict[str, torch.Tensor], views: dict[str, torch.Tensor], k: int
    ) -> torch.Tensor:
        """The chunk's models as ``(k, D)``, `serialize_model`'s layout, on CPU."""
        pieces = []
        for name in self._layout.names:
            t = params[name] if name in params else views[name].unsqueeze(0)
            pieces.append(t.detach().reshape(t.shape[0], -1).expand(k, -1))
        return torch.cat([p.to(self._layout.dtype) for p in pieces], dim=1).cpu()

    def _scaffold_correction(
        self,
        members: Sequence[CohortMember],
        broadcast: Broadcast,
        ready: list[tuple[int, Any, Any]],
        views: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor] | None:
        """SCAFFOLD's per-client (c − cᵢ), stacked in the chunk's row order."""
        if self._kind != "scaffold":
            return None
        c = broadcast.extra["c"]
        rows = []
        for position, _, _ in ready:
            c_i = members[position].state.data.get("c")
            rows.append(c - (torch.zeros_like(c) if c_i is None else c_i))
        stacked = torch.stack(rows).to(next(iter(views.values())).device)
        out = {}
        for name, off, shape in zip(
            self._layout.names, self._layout.offsets, self._layout.shapes, strict=True
        ):
            if name in self._layout.trainable:
                out[name] = stacked[:, off : off + shape.numel()].reshape(-1, *shape)
        return out

    def _scaffold_state(
        self,
        data: dict[str, Any],
        broadcast: Broadcast,
        y: torch.Tensor,
        steps: int,
    ) -> dict[str, torch.Tensor]:
        """cᵢ⁺ into the client's state; Δcᵢ for the uplink (as `Scaffold`)."""
        x = broadcast.params
        c = broadcast.extra["c"]
        c_i = data.get("c")
        if c_i is None:
            c_i = torch.zeros_like(x)
        if steps > 0:
            c_plus = c_i - c + (x - y) / (steps * self._client.lr)
        else:
            c_plus = c_i.clone()
        data["c"] = c_plus
        return {"delta_c": c_plus - c_i}
