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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate
from blazefl.algorithms._cohort_data import ClientBatches, client_batches
from blazefl.algorithms._fedprox import FedProx
from blazefl.algorithms._scaffold import Scaffold
from blazefl.models import build_model
from blazefl.sim import CohortMember, CohortResult, StopFlag
from blazefl.sim._context import ClientState

if TYPE_CHECKING:
    from blazefl.algorithms._client import FederatedClient

__all__ = ["CohortTrainer", "cohort_refusal"]

PER_CLIENT = (
    "InlineExecutor, ThreadExecutor, ProcessExecutor or RayExecutor; "
    "blazefl run --executor inline, threads, processes or ray"
)
# Default memory budget of one chunk when choosing max_cohort automatically.
_BUDGET_BYTES = 256 * 2**20
_MAX_AUTO = 256

# Modules whose training-mode forward keeps state or draws randomness outside
# the client's RNG suite: a batched step cannot reproduce them.
_STATEFUL = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def _update_kind(algorithm: Algorithm) -> str | None:
    update = type(algorithm).client_update
    if update is Algorithm.client_update:
        return "sgd"
    if update is FedProx.client_update:
        return "fedprox"
    if update is Scaffold.client_update:
        return "scaffold"
    return None


def cohort_refusal(client: FederatedClient, model: nn.Module) -> str | None:
    """Why ``client``'s work cannot be trained as a cohort, or None if it can."""
    from blazefl.algorithms._client import FederatedClient

    if type(client).__call__ is not FederatedClient.__call__:
        return (
            f"{type(client).__qualname__} overrides FederatedClient.__call__ with "
            "its own Python client loop, which cannot be batched"
        )
    if _update_kind(client.algorithm) is None:
        return (
            f"{type(client.algorithm).__qualname__}.client_update is custom Python "
            "code; the cohort executor batches the built-in client updates only "
            "(plain SGD: FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad; FedProx; "
            "SCAFFOLD)"
        )
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and (
            module.track_running_stats
        ):
            return (
                f"the model's {name or 'root'} ({type(module).__name__}) keeps "
                "running statistics, which a batched step does not update"
            )
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return (
                f"the model's {name or 'root'} ({type(module).__name__}) draws "
                "random masks, which a batched step cannot draw per client"
            )
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each ``state_dict`` entry sits in the `serialize_model` vector."""

    names: tuple[str, ...]
    offsets: tuple[int, ...]
    shapes: tuple[torch.Size, ...]
    trainable: frozenset[str]
    dtype: torch.dtype
    size: int


def _layout(model: nn.Module) -> _Layout:
    state = model.state_dict()
    names, offsets, shapes = [], [], []
    offset = 0
    for name, tensor in state.items():
        names.append(name)
        offsets.append(offset)
        shapes.append(tensor.shape)
        offset += tensor.numel()
    dtype = torch.float32
    if state:
        dtype = state[names[0]].dtype
        for tensor in state.values():
            dtype = torch.promote_types(dtype, tensor.dtype)
    trainable = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    return _Layout(
        tuple(names), tuple(offsets), tuple(shapes), trainable, dtype, offset
    )


def _loss(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    fixed: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    count: torch.Tensor,
) -> torch.Tensor:
    """One client's mean cross-entropy over the real samples of its batch."""
    logits = functional_call(model, {**params, **fixed}, (x,))
    per_sample = F.cross_entropy(logits, y, reduction="none")
    return (per_sample * mask).sum() / count


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
        self._kind = _update_kind(client.algorithm)
        self._layout = _layout(model)
        self._check_batchable(model)

    def _check_batchable(self, model: nn.Module) -> None:
        """One batched step of two clients on a probe sample, so a forward
        that vmap cannot batch (data-dependent control flow, ``.item()``,
        in-place writes to inputs) fails at construction, not in round 1."""
        probe = self._probe_input(model)
        if probe is None:
            return
        params = {
            n: p.detach().unsqueeze(0).expand(2, *p.shape).clone()
            for n, p in model.named_parameters()
            if p.requires_grad
        }
        fixed = {
            n: t
            for n, t in model.state_dict().items()
            if n not in self._layout.trainable
        }
        x = probe.unsqueeze(0).expand(2, *probe.shape)
        y = torch.zeros((2, 1), dtype=torch.int64)
        ones = torch.ones((2, 1), dtype=self._layout.dtype)
        try:
            vmap(
                grad_and_value(lambda p, x, y, m, c: _loss(model, p, fixed, x, y, m, c))
            )(params, x, y, ones, ones[:, 0])
        except Exception as exc:
            raise ConfigurationError(
                "cohort execution cannot run this client work: the model's "
                f"forward cannot be batched with torch.func.vmap ({type(exc).__name__}"
                f": {exc}). Run it on a per-client executor ({PER_CLIENT})"
            ) from exc

    def cohort_size(self) -> int:
        """An automatic chunk size: as many clients as fit the memory budget.

        Per client a chunk holds about six copies of the model (parameters,
        gradients, the update, SCAFFOLD's correction) and the activations of
        one batch (forward and backward); the activations are measured once
        with a forward pass of one batch.
        """
        model = build_model(self._client.model_selector, self._client.model_name)
        probe = self._probe_input(model)
        activations = 0
        if probe is not None:
            sizes: list[int] = []
            hooks = [
                m.register_forward_hook(
                    lambda _m, _i, out: sizes.append(
                        out.numel() if isinstance(out, torch.Tensor) else 0
                    )
                )
                for m in model.modules()
            ]
            try:
                with torch.no_grad():
                    model(probe)
            finally:
                for hook in hooks:
                    hook.remove()
            activations = sum(sizes) * self._client.batch_size
        per_client = 4 * (6 * self._layout.size + 3 * activations) + 1
        return max(1, min(_MAX_AUTO, _BUDGET_BYTES // per_client))

    def _probe_input(self, model: nn.Module) -> torch.Tensor | None:
        """One training sample of the first client that has one (a 1-batch)."""
        dataset = self._client.dataset
        for cid in range(getattr(dataset, "num_clients", 1)):
            try:
                part = dataset.get_dataset("train", cid)
                if len(part):
                    x = part[0][0]
                    return torch.as_tensor(x).unsqueeze(0)
            except Exception:
                return None
        return None

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

        step = vmap(
            grad_and_value(lambda p, x, y, m, c: _loss(model, p, fixed, x, y, m, c)),
            in_dims=(0, 0, 0, 0, 0),
        )
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
