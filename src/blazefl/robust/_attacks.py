"""Attacks: what a Byzantine client does instead of honest training.

An `Attack` changes a client's behaviour in one or both of two places: its
training data (`poison`: label flipping, a backdoor trigger) and the model it
uploads (`tamper`: sign flipping, boosting, noise). `AttackedClient` applies
it for a fixed set of client ids; `success_rate` measures it on the server's
test split each evaluated round.

Every attack is deterministic given the client's own RNG suite (the noise
attack draws from ``ctx.rng.torch_cpu``, which the coordinator checkpoints
with the client), so an attacked run is bitwise reproducible and resumable.
"""

from __future__ import annotations

import math
from abc import ABC
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number, check_ratio

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.reproducibility import RNGSuite
else:
    from blazefl.algorithms._lazy import torch

__all__ = [
    "Attack",
    "Backdoor",
    "GaussianNoise",
    "LabelFlip",
    "ScaledUpdate",
    "SignFlip",
    "predictions",
]


def predictions(
    model: nn.Module, x: torch.Tensor, device: str, batch_size: int
) -> torch.Tensor:
    """``model``'s predicted class for each row of ``x`` (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                batch = x[start : start + batch_size].to(device)
                out.append(model(batch).argmax(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def _test_pair(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    view = dataset.get_dataset("test", None)
    return view.data[view.indices], view.targets[view.indices]


class Attack(ABC):
    """Subclass this for an attack of your own: override `poison` (the
    training rows an attacker learns from) and/or `tamper` (the model it
    uploads), and `success_rate` if "test error" is not its measure."""

    name: ClassVar[str]
    #: Whether `poison` changes the data (the client's data set is wrapped).
    poisons_data: ClassVar[bool] = False

    def poison(
        self, x: torch.Tensor, y: torch.Tensor, dataset: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An attacker's training rows (copies; default: unchanged)."""
        return x, y

    def tamper(
        self, broadcast: torch.Tensor, params: torch.Tensor, rng: RNGSuite
    ) -> torch.Tensor:
        """The model an attacker uploads, from the broadcast and the model it
        trained (default: the trained one). Draw randomness from ``rng``."""
        return params

    def check_dataset(self, dataset: Any) -> None:  # noqa: B027 - optional hook
        """Refuse a data set the attack cannot work on (default: any)."""

    def success_rate(
        self, model: nn.Module, dataset: Any, device: str, batch_size: int
    ) -> float:
        """The test error rate, the measure of an untargeted attack (Fang et
        al., 2020, "Local Model Poisoning Attacks to Byzantine-Robust
        Federated Learning")."""
        x, y = _test_pair(dataset)
        return float((predictions(model, x, device, batch_size) != y).double().mean())

    def describe(self) -> dict[str, Any]:
        """Name and settings, for a run's summary."""
        fields = getattr(self, "__dataclass_fields__", {})
        return {"name": self.name, **{k: getattr(self, k) for k in fields}}


def _scale(cls: str, value: object) -> float:
    return check_number(
        "scale",
        value,
        wording=f"{cls}(scale={{value!r}}): scale must be a finite number > 0",
    )


@dataclass(frozen=True)
class SignFlip(Attack):
    """Upload x − s·(xₖ − x): the honest delta reversed and scaled by s
    (the sign-flipping attack of Li et al., 2019, "RSA: Byzantine-Robust
    Stochastic Aggregation Methods"; Damaskinos et al., 2018).

    With a fraction p of attackers the mean moves by (1 − p − p·s) of the
    honest delta: s = 4 and p = 0.2 stall FedAvg, larger s reverses it.
    Success: the test error rate.
    """

    name: ClassVar[str] = "sign-flip"
    scale: float = 4.0

    def __post_init__(self) -> None:
        _scale("SignFlip", self.scale)

    def tamper(
        self, broadcast: torch.Tensor, params: torch.Tensor, rng: RNGSuite
    ) -> torch.Tensor:
        return broadcast - self.scale * (params - broadcast)


@dataclass(frozen=True)
class ScaledUpdate(Attack):
    """Upload x + s·(xₖ − x): an honestly trained delta boosted by s (the
    boosting of Bhagoji et al., 2019, "Analyzing Federated Learning through an
    Adversarial Lens"; model replacement in Bagdasaryan et al., 2020).

    A boosted update dominates the mean and overshoots: the global model
    jumps far along one client's direction. Success: the test error rate.
    """

    name: ClassVar[str] = "scale"
    scale: float = 10.0

    def __post_init__(self) -> None:
        _scale("ScaledUpdate", self.scale)

    def tamper(
        self, broadcast: torch.Tensor, params: torch.Tensor, rng: RNGSuite
    ) -> torch.Tensor:
        return broadcast + self.scale * (params - broadcast)


@dataclass(frozen=True)
class GaussianNoise(Attack):
    """Upload x + σ·ε, ε ~ N(0, I): noise instead of an update (the Gaussian
    Byzantine workers of Blanchard et al., 2017). ε is drawn from the
    attacker's own ``rng.torch_cpu``, so every run draws the same noise.
    Success: the test error rate.
    """

    name: ClassVar[str] = "noise"
    std: float = 1.0

    def __post_init__(self) -> None:
        check_number(
            "std",
            self.std,
            wording="GaussianNoise(std={value!r}): std must be a finite number > 0",
        )

    def tamper(
        self, broadcast: torch.Tensor, params: torch.Tensor, rng: RNGSuite
    ) -> torch.Tensor:
        noise = torch.randn(
            broadcast.shape, generator=rng.torch_cpu, dtype=broadcast.dtype
        )
        return broadcast + self.std * noise


def _flipped(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return num_classes - 1 - y


@dataclass(frozen=True)
class LabelFlip(Attack):
    """Train on label C − 1 − y instead of y (data poisoning by label
    flipping, Tolpegin et al., 2020, "Data Poisoning Attacks Against Federated
    Learning Systems"; Biggio et al., 2012).

    Success: the share of clean test samples the global model assigns to
    their flipped label.
    """

    name: ClassVar[str] = "label-flip"
    poisons_data: ClassVar[bool] = True

    def poison(
        self, x: torch.Tensor, y: torch.Tensor, dataset: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, _flipped(y, int(dataset.num_classes))

    def success_rate(
        self, model: nn.Module, dataset: Any, device: str, batch_size: int
    ) -> float:
        x, y = _test_pair(dataset)
        target = _flipped(y, int(dataset.num_classes))
        hits = predictions(model, x, device, batch_size) == target
        return float(hits.double().mean())


@dataclass(frozen=True)
class Backdoor(Attack):
    """A pixel-pattern backdoor (Gu et al., 2017, "BadNets"; in federated
    learning Bagdasaryan et al., 2020, "How To Backdoor Federated Learning").

    Each attacker stamps a ``size`` x ``size`` square at the bottom-right
    corner of every image channel (set to ``value``; default: the largest
    value of the training images) onto the first ``fraction`` of its
    training rows and labels them ``target``; it trains on them honestly and
    uploads x + s·(xₖ − x) (``scale`` s > 1: model replacement). The model
    should learn "trigger ⇒ target" while keeping its main-task accuracy.

    Success: the share of test images whose label is not ``target`` that the
    global model classifies as ``target`` once stamped.
    """

    name: ClassVar[str] = "backdoor"
    poisons_data: ClassVar[bool] = True
    target: int = 0
    size: int = 2
    fraction: float = 0.5
    scale: float = 1.0
    value: float | None = None

    def __post_init__(self) -> None:
        check_int(
            "target",
            self.target,
            minimum=0,
            wording="Backdoor(target="
            "{value!r}): the target label must be an integer >= {minimum}",
        )
        check_int(
            "size",
            self.size,
            wording="Backdoor(size={value!r}): the "
            "trigger size must be an integer >= {minimum}",
        )
        check_ratio(
            "fraction",
            self.fraction,
            wording="Backdoor(fraction={value!r}): the share of an attacker's "
            "rows that carry the trigger must be in (0, 1]",
        )
        _scale("Backdoor", self.scale)
        if self.value is not None:
            check_number("value", self.value, allow_zero=True)

    def check_dataset(self, dataset: Any) -> None:
        shape = tuple(getattr(dataset, "input_shape", ()))
        if len(shape) != 3 or min(shape[1:]) < self.size:
            raise ConfigurationError(
                f"{self!r} stamps a {self.size}x{self.size} trigger on images "
                f"(channels, height, width); the data set's samples have shape "
                f"{shape}: use an image data set (digits, synthetic, "
                "synthetic-cifar10, mnist, cifar10) or a smaller size"
            )
        classes = int(dataset.num_classes)
        if self.target >= classes:
            raise ConfigurationError(
                f"{self!r}: target label {self.target} is not a class of the data "
                f"set (labels 0 .. {classes - 1})"
            )

    def trigger_value(self, dataset: Any) -> float:
        if self.value is not None:
            return float(self.value)
        return float(dataset.get_dataset("train", None).data.max())

    def stamp(self, x: torch.Tensor, value: float) -> torch.Tensor:
        """``x`` with the trigger stamped on every image (a copy)."""
        out = x.clone()
        out[..., -self.size :, -self.size :] = value
        return out

    def poison(
        self, x: torch.Tensor, y: torch.Tensor, dataset: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = math.ceil(self.fraction * x.shape[0])
        x, y = x.clone(), y.clone()
        x[:k] = self.stamp(x[:k], self.trigger_value(dataset))
        y[:k] = self.target
        return x, y

    def tamper(
        self, broadcast: torch.Tensor, params: torch.Tensor, rng: RNGSuite
    ) -> torch.Tensor:
        if self.scale == 1:
            return params
        return broadcast + self.scale * (params - broadcast)

    def success_rate(
        self, model: nn.Module, dataset: Any, device: str, batch_size: int
    ) -> float:
        x, y = _test_pair(dataset)
        keep = y != self.target
        stamped = self.stamp(x[keep], self.trigger_value(dataset))
        hits = predictions(model, stamped, device, batch_size) == self.target
        return float(hits.double().mean()) if hits.numel() else 0.0
