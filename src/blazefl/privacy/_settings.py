"""`Privacy`: one federation's privacy settings, and the client-side transform.

One frozen object carries every choice (central or local DP, the noise, the
clipping, the accountant, secure aggregation); `FederatedClient` applies
`Privacy.client_transform` to each update before upload and
`FederatedServer` builds its `PrivateAggregation` from the same object, so
the two sides cannot disagree. Everything is checked at construction.

What a client uploads when privacy is on: besides its (untouched) model
vector, ``extra["privacy.update"]``: the float64 vector
[w·Δ̃, w, (b − ½)] — its clipped (and, local DP, noised) update Δ̃, its weight
w (1 with DP, so every user counts the same and the sum's sensitivity is C;
its sample count without DP) and, with adaptive clipping, its centred
clipping bit — or, with secure aggregation, that vector encoded and masked
(int64). The server reads only that entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from blazefl._exceptions import ConfigurationError
from blazefl.privacy._clipping import clip
from blazefl.privacy._local import gaussian_noise, laplace_noise
from blazefl.privacy._secagg import encode, mask

if TYPE_CHECKING:
    import torch

    from blazefl.algorithms import Algorithm, Broadcast, ClientUpdate
    from blazefl.sim import ClientContext

__all__ = [
    "CLIP_KEY",
    "COHORT_KEY",
    "DP_INCOMPATIBLE_AGGREGATORS",
    "SECAGG_INCOMPATIBLE_AGGREGATORS",
    "UPDATE_KEY",
    "Privacy",
]

CLIP_KEY = "privacy.clip_norm"
COHORT_KEY = "privacy.cohort"
UPDATE_KEY = "privacy.update"

#: Aggregators that need individual updates: secure aggregation hides them.
SECAGG_INCOMPATIBLE_AGGREGATORS = frozenset(
    {"median", "trimmed-mean", "krum", "multi-krum", "bulyan"}
)
#: Aggregators whose output one client can move by more than C/m (they pick
#: or rank updates): the Gaussian noise σ·C no longer covers one user.
DP_INCOMPATIBLE_AGGREGATORS = SECAGG_INCOMPATIBLE_AGGREGATORS


def _positive(name: str, value: object, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Privacy:
    """Differential privacy and secure aggregation for one federation.

    :param dp: ``"off"``, ``"central"`` (the server noises the sum; McMahan
        et al. 2018's DP-FedAvg) or ``"local"`` (each client noises its own
        update).
    :param noise_multiplier: σ: noise stddev (Laplace: scale) over C.
    :param clip_norm: C, the clipping norm (the initial one when adaptive).
    :param adaptive_clip: track the ``target_quantile`` of update norms
        (Andrew et al. 2021); central DP only.
    :param clip_count_stddev: σ_b of the clipped-count noise (default: the
        paper's m/20, at least σ, which leaves the update σ_Δ ≈ 1.15·σ).
    :param mechanism: local DP's noise, ``"gaussian"`` or ``"laplace"``.
    :param delta: δ of the reported (ε, δ).
    :param accountant: ``"rdp"`` or ``"pld"`` (see `PrivacyAccountant`).
    :param target_epsilon: a budget: no round starts that would exceed it.
    :param secagg: securely aggregate (pairwise masks, see
        `blazefl.privacy._secagg`).
    :param secret: the per-run secret the simulated pair seeds derive from.
    """

    dp: Literal["off", "central", "local"] = "off"
    noise_multiplier: float | None = None
    clip_norm: float = 1.0
    adaptive_clip: bool = False
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    clip_count_stddev: float | None = None
    mechanism: Literal["gaussian", "laplace"] = "gaussian"
    delta: float = 1e-5
    accountant: Literal["rdp", "pld"] = "rdp"
    target_epsilon: float | None = None
    secagg: bool = False
    secret: int = 0

    def __post_init__(self) -> None:
        if self.dp not in ("off", "central", "local"):
            raise ConfigurationError(
                f"dp must be 'off', 'central' or 'local', got {self.dp!r}"
            )
        if self.mechanism not in ("gaussian", "laplace"):
            raise ConfigurationError(
                f"mechanism must be 'gaussian' or 'laplace', got {self.mechanism!r}"
            )
        if self.accountant not in ("rdp", "pld"):
            raise ConfigurationError(
                f"accountant must be 'rdp' or 'pld', got {self.accountant!r}"
            )
        for name in ("adaptive_clip", "secagg"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be true or false, got {getattr(self, name)!r}"
                )
        _positive("clip_norm", self.clip_norm)
        _positive("clip_learning_rate", self.clip_learning_rate)
        _positive("clip_count_stddev", self.clip_count_stddev, allow_none=True)
        _positive("target_epsilon", self.target_epsilon, allow_none=True)
        q = self.target_quantile
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1:
            raise ConfigurationError(f"target_quantile must be in (0, 1), got {q!r}")
        d = self.delta
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 < d < 1:
            raise ConfigurationError(f"delta must be a number in (0, 1), got {d!r}")
        if self.dp == "off":
            for name in ("noise_multiplier", "target_epsilon"):
                if getattr(self, name) is not None:
                    raise ConfigurationError(f"{name} needs dp='central' or 'local'")
            if self.adaptive_clip:
                raise ConfigurationError("adaptive_clip needs dp='central'")
            return
        if self.noise_multiplier is None:
            raise ConfigurationError(
                f"dp={self.dp!r} needs a noise_multiplier (> 0), or derive one from "
                "a target epsilon (blazefl run --calibrate)"
            )
        _positive("noise_multiplier", self.noise_multiplier)
        if self.adaptive_clip and self.dp != "central":
            raise ConfigurationError(
                "adaptive clipping needs central DP: its clipped-count is noised by "
                "the server (dp='central')"
            )
        if self.mechanism == "laplace" and self.dp != "local":
            raise ConfigurationError("Laplace noise is for local DP (dp='local')")

    @property
    def enabled(self) -> bool:
        """Whether updates are transformed at all."""
        return self.dp != "off" or self.secagg

    def check_with(self, algorithm: Algorithm, aggregator: str = "mean") -> None:
        """Refuse an algorithm or aggregator the privacy argument does not cover."""
        if not self.enabled:
            return
        what = "secure aggregation" if self.dp == "off" else f"{self.dp} DP"
        if algorithm.uplink_extras:
            raise ConfigurationError(
                f"{what} cannot be combined with {algorithm.name}: it uploads "
                f"{', '.join(algorithm.uplink_extras)} besides the model, a second "
                "channel that is neither clipped, noised nor masked"
            )
        if self.secagg and aggregator in SECAGG_INCOMPATIBLE_AGGREGATORS:
            raise ConfigurationError(
                f"--secagg cannot be combined with --aggregator {aggregator}: it "
                "needs the individual updates, and secure aggregation reveals only "
                "their sum; use --aggregator mean or norm-bound"
            )
        if self.dp != "off" and aggregator in DP_INCOMPATIBLE_AGGREGATORS:
            raise ConfigurationError(
                f"--dp {self.dp} cannot be combined with --aggregator {aggregator}: "
                "it selects or ranks individual updates, so one client can move "
                "the result by more than C/m and the noise sigma*C no longer "
                "bounds its influence; use --aggregator mean or norm-bound"
            )

    def with_noise(self, noise_multiplier: float) -> Privacy:
        """A copy with another σ (what `--calibrate` derived)."""
        return replace(self, noise_multiplier=noise_multiplier)

    # -- the client side -----------------------------------------------------

    def client_transform(
        self, ctx: ClientContext, broadcast: Broadcast, update: ClientUpdate
    ) -> ClientUpdate:
        """Clip, noise (local DP) and mask (secagg) one client's update."""
        import torch

        if not self.enabled:
            return update
        base = broadcast.params
        if CLIP_KEY not in broadcast.extra:
            raise ConfigurationError(
                f"client {ctx.cid}: the broadcast carries no {CLIP_KEY!r}; the "
                "server runs without this Privacy (give FederatedServer the same "
                "privacy= as FederatedClient)"
            )
        delta = update.params.to(torch.float64) - base.to(torch.float64)
        parts: list[torch.Tensor] = []
        if self.dp == "off":
            weight = float(update.num_samples)
            parts += [delta * weight, torch.tensor([weight], dtype=torch.float64)]
        else:
            clip_norm = float(broadcast.extra[CLIP_KEY])
            order = 1 if self.mechanism == "laplace" else 2
            clipped, norm = clip(delta, clip_norm, order=order)
            ctx.metrics["update_norm"] = norm
            if self.dp == "local":
                clipped = clipped + self._local_noise(ctx, clipped.numel(), clip_norm)
            parts += [clipped, torch.ones(1, dtype=torch.float64)]
            if self.adaptive_clip:
                bit = 1.0 if norm <= clip_norm else 0.0
                parts.append(torch.tensor([bit - 0.5], dtype=torch.float64))
        vector = torch.cat(parts)
        if self.secagg:
            cohort = [int(c) for c in broadcast.extra[COHORT_KEY].tolist()]
            vector = mask(
                encode(vector, len(cohort)),
                ctx.cid,
                cohort,
                secret=self.secret,
                round_index=broadcast.round,
            )
        return replace(update, params=base, extra={**update.extra, UPDATE_KEY: vector})

    def _local_noise(
        self, ctx: ClientContext, size: int, clip_norm: float
    ) -> torch.Tensor:
        assert self.noise_multiplier is not None  # checked at construction
        scale = self.noise_multiplier * clip_norm
        generator = ctx.rng.torch_cpu
        if self.mechanism == "laplace":
            return laplace_noise(size, scale, generator)
        return gaussian_noise(size, scale, generator)
