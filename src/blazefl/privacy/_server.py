"""`PrivateAggregation`: the server's half of `Privacy`.

Per round, in this order: secure sum (when masked) ▸ central noise on the
sum, drawn from the server's RNG suite (its ``torch_cpu`` generator, which
the checkpoint keeps) ▸ the mean over the arrived clients ▸ the adaptive
clipping step ▸ one aggregate update handed to the algorithm's server step
(FedAvg, FedAvgM, FedProx, the FedOpt family: each takes the mean update as
its input). The number of arrived clients is treated as public (failures are
assumed not to depend on the clients' data).

It also answers the accountant's questions: ε after r rounds, and whether the
next round would exceed the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blazefl._exceptions import ConfigurationError
from blazefl.privacy._accountant import PrivacyAccountant
from blazefl.privacy._clipping import adaptive_step, update_noise_multiplier
from blazefl.privacy._secagg import SecAggStats, decode, masked_sum
from blazefl.privacy._settings import CLIP_KEY, COHORT_KEY, UPDATE_KEY, Privacy

if TYPE_CHECKING:
    import torch

    from blazefl.algorithms import ClientUpdate
    from blazefl.reproducibility import RNGSuite

__all__ = ["PrivateAggregation"]


class PrivateAggregation:
    """The server side of ``privacy`` for a federation of ``num_clients``
    sampling ``clients_per_round`` (fixed size, without replacement)."""

    def __init__(
        self, privacy: Privacy, num_clients: int, clients_per_round: int
    ) -> None:
        self.privacy = privacy
        self.clients_per_round = clients_per_round
        self.accountant: PrivacyAccountant | None = None
        self.update_noise = 0.0
        self.count_stddev = 0.0
        if privacy.dp != "off":
            assert privacy.noise_multiplier is not None  # Privacy checked it
            self.accountant = PrivacyAccountant(
                privacy.dp,
                privacy.noise_multiplier,
                num_clients,
                clients_per_round,
                float(privacy.delta),
                privacy.accountant,
                privacy.mechanism,
            )
            if privacy.dp == "central":
                self.update_noise = privacy.noise_multiplier
            if privacy.adaptive_clip:
                self.count_stddev = privacy.clip_count_stddev or max(
                    clients_per_round / 20, privacy.noise_multiplier
                )
                self.update_noise = update_noise_multiplier(
                    privacy.noise_multiplier, self.count_stddev
                )
            target = privacy.target_epsilon
            if target is not None and self.accountant.exceeds(target, 1):
                raise ConfigurationError(
                    f"target_epsilon={target} is spent by the first round already "
                    f"(epsilon {self.accountant.epsilon(1):.4g} at delta="
                    f"{privacy.delta}); raise the noise multiplier or the budget"
                )
        self.clip_norm = float(privacy.clip_norm)
        self.last_secagg: SecAggStats | None = None
        self._secagg_totals: list[float] = [0, 0.0, 0]  # bytes, seconds, rounds

    # -- the round -------------------------------------------------------------

    def downlink(self, cohort: Sequence[int]) -> dict[str, torch.Tensor]:
        """What every sampled client needs: the clip norm, the cohort."""
        import torch

        extra = {CLIP_KEY: torch.tensor(self.clip_norm, dtype=torch.float64)}
        if self.privacy.secagg:
            extra[COHORT_KEY] = torch.tensor(list(cohort), dtype=torch.int64)
        return extra

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        cohort: Sequence[int],
        round_index: int,
        rng: RNGSuite,
    ) -> ClientUpdate:
        """The round's one (noised) mean update, as an update of the model."""
        import torch

        from blazefl.algorithms import ClientUpdate

        for u in updates:
            self.check_uplink(u)
        vectors = [u.extra[UPDATE_KEY] for u in updates]
        if self.privacy.secagg:
            start = time.perf_counter()
            total = decode(
                masked_sum(
                    [(u.cid, v) for u, v in zip(updates, vectors, strict=True)],
                    cohort,
                    secret=self.privacy.secret,
                    round_index=round_index,
                )
            )
            stats = SecAggStats.of(
                len(cohort), len(updates), total.numel(), time.perf_counter() - start
            )
            self.last_secagg = stats
            self._secagg_totals[0] += stats.extra_bytes
            self._secagg_totals[1] += stats.seconds
            self._secagg_totals[2] += 1
        else:
            total = torch.zeros_like(vectors[0], dtype=torch.float64)
            for v in vectors:
                total.add_(v.to(torch.float64))
        size = params.numel()
        if total.numel() != size + 1 + int(self.privacy.adaptive_clip):
            raise ConfigurationError(
                f"a privacy update has {total.numel()} elements; expected "
                f"{size + 1 + int(self.privacy.adaptive_clip)} for this model"
            )
        summed, weight = total[:size], float(total[size])
        generator = rng.torch_cpu
        if self.privacy.dp == "central":
            std = self.update_noise * self.clip_norm
            summed = (
                summed
                + torch.randn(size, generator=generator, dtype=torch.float64) * std
            )
        if self.privacy.adaptive_clip:
            count = (
                float(total[size + 1])
                + float(torch.randn(1, generator=generator, dtype=torch.float64)[0])
                * self.count_stddev
            )
            self.clip_norm = adaptive_step(
                self.clip_norm,
                count,
                len(updates),
                target_quantile=self.privacy.target_quantile,
                learning_rate=self.privacy.clip_learning_rate,
            )
        if not weight > 0 or not math.isfinite(weight):
            raise ConfigurationError(f"the round's total weight is {weight}")
        mean = summed / weight
        new = (params.to(torch.float64) + mean).to(params.dtype)
        return ClientUpdate(-1, new, max(1, round(weight)))

    def check_uplink(self, update: ClientUpdate) -> None:
        """Refuse an update that did not go through `Privacy.client_transform`
        (`FederatedServer.check_uplink` calls it, so it is a failed slot)."""
        import torch

        vector = update.extra.get(UPDATE_KEY)
        if not isinstance(vector, torch.Tensor):
            raise ConfigurationError(
                f"client {update.cid} sent no extra[{UPDATE_KEY!r}]: its work does "
                "not apply the federation's Privacy (give FederatedClient the "
                "same privacy= as the server)"
            )
        expected = torch.int64 if self.privacy.secagg else torch.float64
        if vector.dtype != expected or vector.dim() != 1:
            raise ConfigurationError(
                f"client {update.cid} sent extra[{UPDATE_KEY!r}] of dtype "
                f"{vector.dtype} and shape {tuple(vector.shape)}; expected a "
                f"vector of {expected}"
            )

    # -- the accountant ----------------------------------------------------------

    def epsilon(self, rounds: int) -> float | None:
        """ε after ``rounds`` rounds (None without DP)."""
        return None if self.accountant is None else self.accountant.epsilon(rounds)

    def budget_stop(self, rounds_done: int) -> str | None:
        """Why round ``rounds_done + 1`` must not start (None: it may)."""
        target = self.privacy.target_epsilon
        if self.accountant is None or target is None:
            return None
        after = self.accountant.epsilon(rounds_done + 1)
        if after <= target:
            return None
        return (
            f"privacy budget: round {rounds_done + 1} would spend epsilon "
            f"{after:.4g} > --target-epsilon {target} (at delta "
            f"{self.privacy.delta}); stopped after {rounds_done} rounds with "
            f"epsilon {self.accountant.epsilon(rounds_done):.4g}"
        )

    def describe(self) -> dict[str, Any]:
        """The privacy facts a run summary records."""
        out: dict[str, Any] = {
            "dp": self.privacy.dp,
            "secagg": self.privacy.secagg,
        }
        if self.accountant is not None:
            out.update(
                noise_multiplier=self.privacy.noise_multiplier,
                clip_norm=self.privacy.clip_norm,
                adaptive_clip=self.privacy.adaptive_clip,
                mechanism=self.privacy.mechanism
                if self.privacy.dp == "local"
                else "gaussian",
                delta=self.privacy.delta,
                accountant=self.privacy.accountant,
                neighbouring_relation=self.accountant.neighbouring_relation,
                sampling=self.accountant.sampling,
                target_epsilon=self.privacy.target_epsilon,
            )
        if self.privacy.secagg:
            from blazefl.privacy._secagg import MODULUS_BITS, SCALE_BITS

            out.update(
                secagg_modulus=f"2^{MODULUS_BITS}", secagg_scale=f"2^{SCALE_BITS}"
            )
            extra_bytes, seconds, rounds = self._secagg_totals
            if rounds:  # rounds this process aggregated (not those before a resume)
                out.update(
                    secagg_extra_bytes_per_round=extra_bytes / rounds,
                    secagg_unmask_seconds_per_round=seconds / rounds,
                )
        out["clip_norm_now"] = self.clip_norm
        return out

    # -- checkpoints ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"clip_norm": self.clip_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clip_norm = float(state["clip_norm"])
