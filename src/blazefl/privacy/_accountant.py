"""The privacy accountant: (ε, δ) after each round, and the noise for a budget.

The arithmetic is Google's ``dp-accounting`` (RDP: Mironov 2017, Wang, Balle
and Kasiviswanathan 2019; PLD: Meiser and Mohammadi 2018, Doroshenko et al.
2022); this module only says which mechanism a round is and which of the
library's analyses applies to it, and refuses the ones it has none for.

What one round is, for the worst-case user (a client is a user here):

- central DP: the server adds N(0, (σ·C)²) to the sum of the round's clipped
  updates; clients are a fixed-size sample of ``m`` of ``n`` drawn without
  replacement (blazefl's sampler), so the neighbouring relation is
  *replace-one* (n is public) and the sum's L2 sensitivity is 2·C. RDP uses
  ``SampledWithoutReplacementDpEvent`` (Wang et al. 2019, Theorem 27) with the
  noise multiplier σ/2 (std over that sensitivity); with full participation
  (m = n) a round is a plain Gaussian mechanism, which PLD analyses too (its
  replace-one Gaussian doubles the sensitivity itself, so it gets σ). PLD has
  no sampled-without-replacement analysis: refused.
- local DP: each client releases its own clipped update plus noise to the
  server, who knows who was sampled, so there is no amplification by
  sampling; ε is that of the most exposed client, one who took part in every
  round so far (an upper bound for everybody). Gaussian: as above; Laplace
  (L1 clipping, scale σ·C, L1 sensitivity 2·C): RDP only (the library's PLD
  Laplace has no replace-one form).

ε counts every round's sampled clients, including those that then failed:
what was sampled is what the analysis assumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from blazefl._exceptions import ConfigurationError, MissingDependencyError

__all__ = ["PrivacyAccountant", "calibrate_noise", "load_dp_accounting"]

Mode = Literal["central", "local"]
Mechanism = Literal["gaussian", "laplace"]
Method = Literal["rdp", "pld"]


def load_dp_accounting() -> Any:
    """The ``dp_accounting`` package, or an error naming the extra to install."""
    try:
        import dp_accounting
    except ImportError as exc:
        raise MissingDependencyError(
            "differential privacy accounting", extra="privacy", package="dp-accounting"
        ) from exc
    return dp_accounting


@dataclass(frozen=True)
class PrivacyAccountant:
    """ε after r rounds of one DP configuration, at a fixed δ.

    :param mode: ``"central"`` or ``"local"`` DP.
    :param noise_multiplier: σ: the noise's standard deviation (Laplace: its
        scale) over the clipping norm C.
    :param num_clients: n, the federation (the population sampled from).
    :param clients_per_round: m, the fixed number sampled each round.
    :param delta: δ of the reported (ε, δ).
    :param method: ``"rdp"`` or ``"pld"``.
    :param mechanism: local DP's noise, ``"gaussian"`` or ``"laplace"``.
    """

    mode: Mode
    noise_multiplier: float
    num_clients: int
    clients_per_round: int
    delta: float
    method: Method = "rdp"
    mechanism: Mechanism = "gaussian"

    def __post_init__(self) -> None:
        sigma = self.noise_multiplier
        if isinstance(sigma, bool) or not isinstance(sigma, int | float):
            raise ConfigurationError(
                f"noise_multiplier must be a number > 0, got {sigma!r}"
            )
        if not (math.isfinite(sigma) and sigma > 0):
            raise ConfigurationError(
                f"noise_multiplier must be a finite number > 0, got {sigma!r}: "
                "without noise there is no differential privacy"
            )
        if not (isinstance(self.delta, float) and 0 < self.delta < 1):
            raise ConfigurationError(
                f"delta must be a number in (0, 1), got {self.delta!r}"
            )
        if not 1 <= self.clients_per_round <= self.num_clients:
            raise ConfigurationError(
                f"clients_per_round={self.clients_per_round} must be in [1, "
                f"num_clients={self.num_clients}]"
            )
        if self.method not in ("rdp", "pld"):
            raise ConfigurationError(
                f"accountant must be 'rdp' or 'pld', got {self.method!r}"
            )
        why = self.unsupported_reason()
        if why is not None:
            raise ConfigurationError(why)
        load_dp_accounting()

    @property
    def neighbouring_relation(self) -> str:
        """The relation the figures are for (recorded in the run summary)."""
        return "user-level, replace-one (fixed-size sampling, n public)"

    @property
    def sampling(self) -> str:
        """The sampling the analysis assumes."""
        if self.mode == "local":
            return "none (local DP: the server knows who took part)"
        if self.clients_per_round == self.num_clients:
            return "full participation (every client every round)"
        return (
            f"fixed size without replacement, {self.clients_per_round} of "
            f"{self.num_clients} a round"
        )

    def unsupported_reason(self) -> str | None:
        """Why dp-accounting cannot analyse this configuration (None: it can)."""
        if self.method != "pld":
            return None
        if self.mode == "local" and self.mechanism == "laplace":
            return (
                "--accountant pld cannot analyse local Laplace noise under the "
                "replace-one relation (dp-accounting's PLD Laplace is add/remove "
                "only); use --accountant rdp"
            )
        if self.mode == "central" and self.clients_per_round < self.num_clients:
            return (
                "--accountant pld cannot analyse fixed-size sampling without "
                f"replacement ({self.clients_per_round} of {self.num_clients} "
                "clients a round; dp-accounting's PLD has Poisson sampling only); "
                "use --accountant rdp, or --sample-ratio 1"
            )
        return None

    def event(self, sigma: float | None = None) -> Any:
        """One round as a ``dp_accounting`` event (σ defaults to this one's)."""
        dpa = load_dp_accounting()
        sigma = self.noise_multiplier if sigma is None else sigma
        # RDP's Gaussian and sampled-without-replacement analyses take the
        # multiplier over the replace-one sensitivity (2C); PLD's replace-one
        # Gaussian takes it over C and doubles itself.
        scaled = sigma / 2 if self.method == "rdp" else sigma
        if self.mode == "local":
            if self.mechanism == "laplace":
                return dpa.LaplaceDpEvent(scaled)
            return dpa.GaussianDpEvent(scaled)
        gaussian = dpa.GaussianDpEvent(scaled)
        if self.clients_per_round == self.num_clients:
            return gaussian
        return dpa.SampledWithoutReplacementDpEvent(
            self.num_clients, self.clients_per_round, gaussian
        )

    def _fresh(self) -> Any:
        dpa = load_dp_accounting()
        relation = dpa.NeighboringRelation.REPLACE_ONE
        if self.method == "rdp":
            return dpa.rdp.RdpAccountant(neighboring_relation=relation)
        return dpa.pld.PLDAccountant(neighboring_relation=relation)

    def epsilon(self, rounds: int) -> float:
        """ε at this δ after ``rounds`` rounds (0 before any)."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ConfigurationError(f"rounds must be an integer >= 0, got {rounds!r}")
        if rounds == 0:
            return 0.0
        return _epsilon(self._key(), rounds)

    def exceeds(self, target_epsilon: float, rounds: int) -> bool:
        """Whether ``rounds`` rounds would spend more than ``target_epsilon``."""
        return self.epsilon(rounds) > target_epsilon

    def _key(self) -> tuple[Any, ...]:
        return (
            self.mode,
            self.noise_multiplier,
            self.num_clients,
            self.clients_per_round,
            self.delta,
            self.method,
            self.mechanism,
        )


@cache
def _epsilon(key: tuple[Any, ...], rounds: int) -> float:
    accountant = PrivacyAccountant(*key)
    if accountant.method == "rdp":
        # The per-round RDP curve is the costly part (sampled without
        # replacement: a sum per order); compute it once, compose by scaling.
        from dp_accounting.rdp import rdp_privacy_accountant as rdp

        curve = _rdp_curve(key)
        if curve is not None:
            eps, _ = rdp.compute_epsilon(
                rdp.DEFAULT_RDP_ORDERS, [rounds * r for r in curve], accountant.delta
            )
            return float(eps)
    fresh = accountant._fresh()
    fresh.compose(accountant.event(), rounds)
    return float(fresh.get_epsilon(accountant.delta))


@cache
def _rdp_curve(key: tuple[Any, ...]) -> tuple[float, ...] | None:
    """One round's RDP curve over DEFAULT_RDP_ORDERS, or None where this
    version of dp-accounting does not expose it (then every ε composes anew)."""
    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    accountant = PrivacyAccountant(*key)
    fresh = accountant._fresh()
    fresh.compose(accountant.event(), 1)
    # The accountant keeps its curve in `_rdp`, one value per order of
    # `_orders`; composing r rounds multiplies it by r.
    curve = getattr(fresh, "_rdp", None)
    orders = getattr(fresh, "_orders", None)
    if curve is None or orders is None or list(orders) != list(rdp.DEFAULT_RDP_ORDERS):
        return None
    return tuple(float(x) for x in curve)


def calibrate_noise(
    template: PrivacyAccountant, target_epsilon: float, rounds: int
) -> float:
    """The smallest σ (to 1e-4) for which ``rounds`` rounds spend at most
    ``target_epsilon`` (dp-accounting's `calibrate_dp_mechanism`)."""
    dpa = load_dp_accounting()
    from dp_accounting import mechanism_calibration as mc

    eps = float(target_epsilon)
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigurationError(
            f"target_epsilon must be a finite number > 0, got {target_epsilon!r}"
        )

    def event(sigma: float) -> Any:
        return dpa.SelfComposedDpEvent(template.event(sigma), rounds)

    try:
        sigma = mc.calibrate_dp_mechanism(
            template._fresh,
            event,
            eps,
            template.delta,
            bracket_interval=mc.LowerEndpointAndGuess(1e-2, 1.0),
            tol=1e-4,
        )
    except mc.NoBracketIntervalFoundError as exc:
        raise ConfigurationError(
            f"no noise multiplier reaches epsilon={eps} after {rounds} rounds at "
            f"delta={template.delta}: raise the budget or lower the rounds"
        ) from exc
    # Round up so the budget holds at the reported precision.
    return math.ceil(float(sigma) * 1e4) / 1e4
