"""What cohort training can batch, and how many clients fit one chunk.

`cohort_refusal` and `check_batchable` decide, when the simulation is built,
whether a `FederatedClient`'s work can be trained as a cohort (the built-in
client updates; no BatchNorm statistics, no dropout; a forward `vmap` can
batch); `auto_cohort_size` picks ``max_cohort`` from the model and batch size.
`client_loss` is the one per-client loss every batched step differentiates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._base import Algorithm
from blazefl.algorithms._fedprox import FedProx
from blazefl.algorithms._scaffold import Scaffold
from blazefl.models import build_model

if TYPE_CHECKING:
    from blazefl.algorithms._client import FederatedClient

__all__ = [
    "PER_CLIENT",
    "auto_cohort_size",
    "check_batchable",
    "chunk_invariant",
    "cohort_refusal",
    "layout_of",
    "client_loss",
    "probe_input",
    "update_kind",
]

PER_CLIENT = (
    "InlineExecutor, ThreadExecutor, ProcessExecutor or RayExecutor; "
    "blazefl run --executor inline, threads, processes or ray"
)
# Default memory budget of one chunk when choosing max_cohort automatically.
_BUDGET_BYTES = 256 * 2**20
_MAX_AUTO = 256


def update_kind(algorithm: Algorithm) -> str | None:
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
    privacy = getattr(client, "privacy", None)
    if privacy is not None and privacy.enabled:
        return (
            "it applies blazefl.privacy (per-client clipping, noise and masks "
            "after training), which the batched step does not"
        )
    if update_kind(client.algorithm) is None and client.algorithm.personalized:
        return (
            f"{client.algorithm.name} trains what each client keeps for itself "
            "(a personal model, a local head or local BatchNorm) in its own "
            "Python client update, which the batched step does not"
        )
    if update_kind(client.algorithm) is None:
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


def layout_of(model: nn.Module) -> _Layout:
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


def client_loss(
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


def _probe_step(
    model: nn.Module, layout: _Layout, probe: torch.Tensor, k: int, spread: float
) -> Any:
    """One batched step of ``k`` clients on ``probe`` (their parameters the
    model's, plus ``spread`` times fixed noise); ``rows`` slices the stack."""
    gen = torch.Generator().manual_seed(0)
    params = {
        n: p.detach().unsqueeze(0)
        + spread * torch.randn((k, *p.shape), generator=gen, dtype=p.dtype)
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    fixed = {n: t for n, t in model.state_dict().items() if n not in layout.trainable}
    x = probe.unsqueeze(0).expand(k, *probe.shape)
    y = torch.zeros((k, 1), dtype=torch.int64)
    ones = torch.ones((k, 1), dtype=layout.dtype)

    def one_client(p: Any, x: Any, y: Any, m: Any, c: Any) -> torch.Tensor:
        return client_loss(model, p, fixed, x, y, m, c)

    def rows(n: int) -> Any:
        stack = {name: t[:n] for name, t in params.items()}
        return vmap(grad_and_value(one_client))(
            stack, x[:n], y[:n], ones[:n], ones[:n, 0]
        )

    return rows


def check_batchable(client: FederatedClient, model: nn.Module, layout: _Layout) -> None:
    """One batched step of two clients on a probe sample, so a forward
    that vmap cannot batch (data-dependent control flow, ``.item()``,
    in-place writes to inputs) fails at construction, not in round 1."""
    probe = probe_input(client)
    if probe is None:
        return
    try:
        _probe_step(model, layout, probe, 2, 0.0)(2)
    except Exception as exc:
        raise ConfigurationError(
            "cohort execution cannot run this client work: the model's "
            f"forward cannot be batched with torch.func.vmap ({type(exc).__name__}"
            f": {exc}). Run it on a per-client executor ({PER_CLIENT})"
        ) from exc


def chunk_invariant(client: FederatedClient, model: nn.Module, layout: _Layout) -> bool:
    """Whether a client's batched step is the same bits in a stack of two and
    of three clients (on the probe sample, CPU): then how a round is cut into
    chunks cannot change any client's result, and the executor may cut it to
    keep every worker busy.

    Linear layers batch as independent matrix products and torch's grouped
    convolution computes each group alone, so the built-in models pass; a
    stack of one is never trained (`CohortTrainer` pads it to two), because
    the ungrouped convolution it would run rounds differently.
    """
    probe = probe_input(client)
    if probe is None:
        return False
    step = _probe_step(model, layout, probe, 3, 1e-2)
    (grads3, loss3), (grads2, loss2) = step(3), step(2)
    return bool(torch.equal(loss2, loss3[:2])) and all(
        torch.equal(g, grads3[n][:2]) for n, g in grads2.items()
    )


def auto_cohort_size(client: FederatedClient, layout: _Layout) -> int:
    """An automatic chunk size: as many clients as fit the memory budget.

    Per client a chunk holds about six copies of the model (parameters,
    gradients, the update, SCAFFOLD's correction) and the activations of
    one batch (forward and backward); the activations are measured once
    with a forward pass of one batch.
    """
    model = build_model(client.model_selector, client.model_name)
    probe = probe_input(client)
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
        activations = sum(sizes) * client.batch_size
    per_client = 4 * (6 * layout.size + 3 * activations) + 1
    return max(1, min(_MAX_AUTO, _BUDGET_BYTES // per_client))


def probe_input(client: FederatedClient) -> torch.Tensor | None:
    """One training sample of the first client that has one (a 1-batch)."""
    dataset = client.dataset
    for cid in range(getattr(dataset, "num_clients", 1)):
        try:
            part = dataset.get_dataset("train", cid)
            if len(part):
                x = part[0][0]
                return torch.as_tensor(x).unsqueeze(0)
        except Exception:
            return None
    return None
