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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import grad_and_value, vmap

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._base import Broadcast, ClientUpdate
from blazefl.algorithms._cohort_data import (
    ClientBatches,
    Drawn,
    draw,
    fast_loader,
    gather_chunk,
)
from blazefl.algorithms._cohort_model import (
    PER_CLIENT,
    auto_cohort_size,
    check_batchable,
    chunk_invariant,
    client_loss,
    cohort_refusal,
    layout_of,
    update_kind,
)
from blazefl.models import build_model
from blazefl.reproducibility import RNGSuiteState
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


@dataclass(frozen=True, slots=True)
class _Ready:
    """A client whose draws are made: its slot, draws, new suite and steps."""

    position: int
    drawn: Drawn | ClientBatches
    rng: RNGSuiteState
    steps: int


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
        self._invariant = chunk_invariant(self._client, model, self._layout)

    def cohort_size(self) -> int:
        """An automatic chunk size (`auto_cohort_size`)."""
        return auto_cohort_size(self._client, self._layout)

    @property
    def chunk_invariant(self) -> bool:
        """Whether any cut of a round into chunks gives every client the same
        bits (`chunk_invariant`, probed on CPU when the trainer is built)."""
        return self._invariant

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
        fast = fast_loader(self._client.dataset)
        generator = torch.Generator()  # one for the chunk, set to each suite
        scratch = torch.empty((), dtype=torch.int64)
        ready: list[_Ready] = []
        for position, member in enumerate(members):
            try:
                ready.append(self._prepare(position, member, generator, fast, scratch))
            except Exception as exc:  # that client's slot fails, not the chunk
                results[position].error = exc
        if ready:
            self._train_ready(members, payload, ready, results, stop_event, cache)
        return results

    def _prepare(
        self,
        position: int,
        member: CohortMember,
        generator: torch.Generator,
        fast: bool,
        scratch: torch.Tensor,
    ) -> _Ready:
        """One client's draws from its own suite, and the suite after them."""
        client = self._client
        cid = member.job.cid
        view = client.dataset.get_dataset("train", cid)
        num_samples = len(view)
        if num_samples == 0:
            raise ConfigurationError(
                f"client {cid} has no training samples (its 'train' partition "
                "is empty); every sampled client needs at least one: give it "
                "data, use fewer clients or a partition with a minimum size"
            )
        rng = member.state.rng
        generator.set_state(
            torch.frombuffer(bytearray(rng.torch_cpu), dtype=torch.uint8)
        )
        drawn = draw(
            client.dataset,
            view,
            cid,
            generator,
            fast=fast,
            epochs=client.epochs,
            batch_size=client.batch_size,
            scratch=scratch,
        )
        new_rng = RNGSuiteState(
            rng.python,
            rng.numpy,
            generator.get_state().numpy().tobytes(),
            rng.torch_cuda,
        )
        if isinstance(drawn, Drawn):
            steps = client.epochs * -(-num_samples // client.batch_size)
        else:
            steps = len(drawn.counts)
        return _Ready(position, drawn, new_rng, steps)

    def _batches(
        self, ready: list[_Ready]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The chunk's inputs, targets and counts, rows in ``ready``'s order."""
        b, epochs = self._client.batch_size, self._client.epochs
        entries = [r.drawn for r in ready]
        first = entries[0]
        if isinstance(first, Drawn):
            fast = [e for e in entries if isinstance(e, Drawn)]
            if len(fast) == len(entries) and all(
                e.view.data is first.view.data and e.view.targets is first.view.targets
                for e in fast
            ):
                return gather_chunk(fast, b, epochs)
        batches = [e if isinstance(e, ClientBatches) else e.batches(b) for e in entries]
        total = ready[0].steps
        xs, ys = _stack(batches, total, b)
        counts = torch.tensor(
            [c.counts + [0] * (total - len(c.counts)) for c in batches],
            dtype=torch.int64,
        )
        return xs, ys, counts

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
        ready: list[_Ready],
        results: list[CohortResult],
        stop_event: StopFlag,
        cache: dict[str, Any],
    ) -> None:
        client, layout = self._client, self._layout
        device = members[ready[0].position].job.device
        model = self._model(cache, device)
        # Longest first: the clients still training at step s are a prefix.
        ready = sorted(ready, key=lambda r: -r.steps)
        k = len(ready)
        steps = [r.steps for r in ready]
        total = steps[0]
        b = client.batch_size
        xs, ys, counts = self._batches(ready)
        xs, ys = xs.to(device), ys.to(device)
        mask = (torch.arange(b).view(1, 1, b) < counts.unsqueeze(2)).to(layout.dtype)
        mask = mask.to(device)
        count_f = counts.clamp(min=1).to(layout.dtype).to(device)
        counts_dev = counts.to(device)
        alive = [sum(1 for n in steps if n > s) for s in range(total)]
        # A stack of one client runs torch's ungrouped convolution, whose
        # rounding differs from the grouped one of two or more; never batch
        # fewer than two rows (a chunk of one trains a twin of itself, a lone
        # last client a finished neighbour whose step is thrown away), so a
        # client's arithmetic does not depend on the chunk it falls in.
        if k == 1:
            xs, ys = xs.expand(2, *xs.shape[1:]), ys.expand(2, *ys.shape[1:])
            mask, count_f = mask.expand(2, *mask.shape[1:]), count_f.expand(2, -1)
        rows = max(k, 2)

        x0 = broadcast.params.to(device)
        views = {
            name: x0[off : off + shape.numel()].view(shape)
            for name, off, shape in zip(
                layout.names, layout.offsets, layout.shapes, strict=True
            )
        }
        params = {
            n: views[n].unsqueeze(0).expand(rows, *views[n].shape).clone()
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
        taken = 0
        was_training = model.training
        model.train()
        try:
            for s in range(total):
                if stop_event.is_set():
                    break
                a = alive[s]
                w = max(a, 2)  # rows batched; only the first a are updated
                live = {n: t[:w] for n, t in params.items()}
                grads, loss = step(
                    live, xs[:w, s], ys[:w, s], mask[:w, s], count_f[:w, s]
                )
                loss = loss[:a]
                with torch.no_grad():
                    for name, t in live.items():
                        p, g = t[:a], grads[name][:a]
                        if mu:
                            g = torch.add(g, p - views[name], alpha=mu)
                        if correction is not None:
                            g = g + correction[name][:a]
                        p.copy_(torch.add(p, g, alpha=-client.lr))
                    loss_sum[:a] += loss.detach().to(torch.float64) * counts_dev[:a, s]
                taken = s + 1
        finally:
            model.train(was_training)
        flat = self._flatten({n: t[:k] for n, t in params.items()}, views, k)
        losses = loss_sum.tolist()
        for row, (r, row_counts) in enumerate(zip(ready, counts.tolist(), strict=True)):
            member = members[r.position]
            done = min(r.steps, taken)
            samples = sum(row_counts[:done])
            mean_loss = losses[row] / samples if samples else 0.0
            num_samples = sum(row_counts) // client.epochs
            y = flat[row].clone()
            data = member.state.data
            extra: dict[str, torch.Tensor] = {}
            if self._kind == "scaffold":
                extra = self._scaffold_state(data, broadcast, y, done)
            metrics = {"loss": mean_loss, "num_samples": float(num_samples)}
            update = ClientUpdate(
                member.job.cid, y, num_samples, extra=extra, metrics=dict(metrics)
            )
            results[r.position] = CohortResult(
                result=update, metrics=metrics, state=ClientState(r.rng, data)
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
        ready: list[_Ready],
        views: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor] | None:
        """SCAFFOLD's per-client (c − cᵢ), stacked in the chunk's row order."""
        if self._kind != "scaffold":
            return None
        c = broadcast.extra["c"]
        rows = []
        for r in ready:
            c_i = members[r.position].state.data.get("c")
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
