"""`FederatedServer`: the one server handler every algorithm runs under."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Protocol

from blazefl._exceptions import ConfigurationError
from blazefl._prechecked import check_unless_prechecked, prechecked
from blazefl._validate import (
    check_int,
    check_seed,
)
from blazefl.algorithms._aggregation import Aggregator, aggregating
from blazefl.algorithms._async import AsyncAlgorithm, StaleUpdate
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate
from blazefl.algorithms._fold import RoundFold
from blazefl.algorithms._server_checks import (
    check_aggregator,
    check_federation_size,
    check_like_model,
    clients_per_round,
    private_aggregation,
)
from blazefl.algorithms._settings import settings_of
from blazefl.core import deserialize_model, serialize_model
from blazefl.models import build_model
from blazefl.reproducibility import RNGSuiteState, create_rng_suite
from blazefl.training import evaluate

__all__ = [
    "AttackProbe",
    "FederatedServer",
    "check_federation_size",
    "check_like_model",
    "clients_per_round",
]


class AttackProbe(Protocol):
    """What measures an attack on the global model (`blazefl.robust`'s attacks)."""

    def success_rate(
        self, model: Any, dataset: Any, device: str, batch_size: int
    ) -> float: ...


class FederatedServer:
    """A BlazeFL server handler that runs any `Algorithm`.

    Samples ``int(num_clients * sample_ratio)`` distinct clients per round
    (sorted) from its own RNG suite seeded by ``seed``; builds the initial model
    from ``seed``; aggregates with ``algorithm.aggregate``; evaluates the
    global model on the data set's ``"test"`` partition for ``get_summary``.
    Everything the next round reads is in `state_dict` (for checkpoints).

    ``aggregator`` takes the weighted mean's place in the algorithm's
    aggregation (a robust one from `blazefl.robust`); its assumption on the
    number of clients per round is checked here. ``attack``, when given, is
    only measured: ``get_summary`` adds its ``attack_success_rate`` on the
    test split.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        model_selector: Any,
        model_name: Any,
        *,
        dataset: Any,
        num_clients: int,
        rounds: int,
        sample_ratio: float = 1.0,
        seed: int = 0,
        device: str = "cpu",
        eval_batch_size: int = 256,
        aggregator: Aggregator | None = None,
        attack: AttackProbe | None = None,
        privacy: Any = None,
    ) -> None:
        if not isinstance(algorithm, Algorithm):
            raise ConfigurationError(
                f"algorithm must be a blazefl.algorithms.Algorithm, got {algorithm!r}"
            )
        self.num_clients = check_int("num_clients", num_clients)
        self.rounds = check_int("rounds", rounds)
        self.clients_per_round = clients_per_round(num_clients, sample_ratio)
        check_federation_size(num_clients, dataset)
        for declared in settings_of(type(algorithm), strict=False):
            federation = getattr(algorithm, declared.name)
            if declared.federation_size and federation != num_clients:
                raise ConfigurationError(
                    f"{type(algorithm).__name__}({declared.name}={federation}) "
                    f"does not match the server's num_clients={num_clients}"
                )
        self.seed = check_seed("seed", seed)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size)
        self.aggregator = check_aggregator(
            algorithm, aggregator, self.clients_per_round
        )
        if attack is not None and not callable(getattr(attack, "success_rate", None)):
            raise ConfigurationError(
                f"attack must have a success_rate method (a blazefl.robust "
                f"attack), got {attack!r}"
            )
        self.attack = attack
        self.algorithm = algorithm
        self.dataset = dataset
        self.device = device
        self.model = build_model(model_selector, model_name, seed).to(device)
        self.params = serialize_model(self.model)
        self.state = algorithm.init_model_state(self.model, self.params)
        self.rng = create_rng_suite(seed)
        self.round = 0
        self._pending: list[ClientUpdate] = []
        self._cohort: list[int] = []
        # Optional `blazefl.privacy.Privacy`: clipping, DP noise, secure sum.
        self.privacy = private_aggregation(
            privacy, algorithm, self.aggregator, num_clients, self.clients_per_round
        )

    # -- the BlazeFL handler protocol ---------------------------------------

    def sample_clients(self) -> list[int]:
        self._cohort = sorted(
            self.rng.python.sample(range(self.num_clients), self.clients_per_round)
        )
        return list(self._cohort)

    def sample_among(self, candidates: Sequence[int], count: int) -> list[int]:
        """``count`` distinct clients of ``candidates`` (sorted) from the server
        RNG: the availability-aware sampling of timed rounds. With every
        client a candidate and ``count == clients_per_round`` it draws exactly
        what `sample_clients` draws."""
        pool = sorted(candidates)
        if count > len(pool):
            raise ConfigurationError(
                f"cannot sample {count} clients from {len(pool)} candidates"
            )
        return sorted(self.rng.python.sample(pool, count))

    def async_buffer_size(self) -> int:
        """The algorithm's own buffer size; refuses one that cannot run async.

        :raises ConfigurationError: naming the algorithm when it cannot apply
            stale updates.
        """
        if not isinstance(self.algorithm, AsyncAlgorithm):
            raise ConfigurationError(
                f"algorithm {self.algorithm.name!r} cannot apply stale updates, "
                "which asynchronous mode needs; use fedbuff or fedasync (or "
                "mode='sync')"
            )
        return self.algorithm.default_buffer_size

    def check_buffer_size(self, size: int) -> None:
        """Refuse a buffer the algorithm does not take (FedAsync: one update)."""
        algorithm = self.algorithm
        if (
            isinstance(algorithm, AsyncAlgorithm)
            and not algorithm.buffered
            and size != 1
        ):
            raise ConfigurationError(
                f"{algorithm.name} applies each update as it arrives; "
                f"buffer_size={size} must be 1 (use fedbuff to buffer updates)"
            )

    def load_stale(self, updates: list[tuple[ClientUpdate, int, Broadcast]]) -> None:
        """Apply arrived updates (update, staleness, the broadcast it started
        from), in arrival order, as one server update; advance the version."""
        algorithm = self.algorithm
        if not isinstance(algorithm, AsyncAlgorithm):
            self.async_buffer_size()  # raises, naming the algorithm
            return
        for update, _, _ in updates:
            check_unless_prechecked(self.check_uplink, update)
        stale = [StaleUpdate(u, tau, base.params) for u, tau, base in updates]
        self.params = algorithm.aggregate_stale(self.params, stale, self.state)
        deserialize_model(self.model, self.params)
        self.round += 1

    def downlink_package(self) -> Broadcast:
        extra = self.algorithm.broadcast_extra(self.state)
        if self.privacy is not None:
            extra = {**extra, **self.privacy.downlink(self._cohort)}
        return Broadcast(self.round, self.params, extra)

    def is_stopped(self) -> bool:
        """After the last round, or before one that would exceed the privacy
        budget (``Privacy(target_epsilon=...)``)."""
        if self.round >= self.rounds:
            return True
        return self.privacy is not None and bool(self.privacy.budget_stop(self.round))

    def load(self, update: ClientUpdate) -> bool:
        """Take one update; aggregate once the round's sampled count arrived."""
        try:
            check_unless_prechecked(self.check_uplink, update)
        except ConfigurationError:
            self._pending = []  # a rejected round leaves nothing behind
            raise
        self._pending.append(update)
        if len(self._pending) < self.clients_per_round:
            return False
        with prechecked():  # each update was checked as it came in
            self.load_round(self._pending)
        return True

    def load_round(self, updates: list[ClientUpdate]) -> None:
        """Aggregate a whole round (also one with dropped clients) and advance."""
        try:
            self.global_update(updates)
        finally:
            self._pending = []
        self.round += 1

    def global_update(self, buffer: list[ClientUpdate]) -> None:
        """Run the algorithm's aggregation on ``buffer`` (slot order)."""
        if not buffer:
            raise ConfigurationError("a round needs at least one client update")
        for update in buffer:
            check_unless_prechecked(self.check_uplink, update)
        self.apply_updates(buffer)

    def apply_updates(self, updates: list[ClientUpdate]) -> None:
        """Aggregate updates the caller already checked into the global model.

        For adapters that check their own package type first and convert it
        (the BlazeFL FedAvg handler), so nothing is checked twice.
        """
        if self.privacy is not None:
            updates = [
                self.privacy.aggregate(
                    self.params, updates, self._cohort, self.round, self.rng
                )
            ]
        with aggregating(self.aggregator, self.rng):
            params = self.algorithm.aggregate(self.params, updates, self.state)
        self.params = params
        deserialize_model(self.model, self.params)

    def round_fold(self) -> RoundFold | None:
        """This round's fold: `blazefl.sim.Simulation` adds each checked
        update to it as the slots before it are in, on a thread of its own
        while the other clients train, so the mean is ready when the round
        ends (bitwise the mean computed from the collected updates).

        None where the round must be collected first: an aggregator that does
        not fold (robust ones, ``WeightedMean(dtype="float64")``), an algorithm
        that does not aggregate through the mean (`Algorithm.folds_updates`),
        or private aggregation (clipping, noise, secure sum).
        """
        if (
            self.privacy is not None
            or not type(self.algorithm).folds_updates
            or not self.aggregator.folds
        ):
            return None
        return RoundFold(self.aggregator.start(self.params))

    def get_summary(self) -> dict[str, float]:
        loader = self.dataset.get_dataloader("test", None, self.eval_batch_size, None)
        loss, accuracy = evaluate(self.model, loader, self.device)
        summary = {"server_acc": accuracy, "server_loss": loss}
        if self.attack is not None:
            summary["attack_success_rate"] = self.attack.success_rate(
                self.model, self.dataset, self.device, self.eval_batch_size
            )
        epsilon = None if self.privacy is None else self.privacy.epsilon(self.round)
        if epsilon is not None:
            summary["epsilon"] = epsilon
        return summary

    # -- checkpoints ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the next round reads: round, model, algorithm state, RNG
        (and the aggregator's state, if it keeps any)."""
        state = {
            "round": self.round,
            "num_clients": self.num_clients,
            "clients_per_round": self.clients_per_round,
            "params": self.params.clone(),
            "algorithm": self.algorithm.name,
            "algorithm_state": {k: v.clone() for k, v in self.state.items()},
            "rng": self.rng.get_state().to_dict(),
            **(
                {"privacy": self.privacy.state_dict()}
                if self.privacy is not None
                else {}
            ),
        }
        aggregator_state = self.aggregator.state_dict()
        if aggregator_state:
            state["aggregator_state"] = aggregator_state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` captured (the round in flight is dropped)."""
        if state.get("algorithm") != self.algorithm.name:
            raise ConfigurationError(
                f"state is for algorithm {state.get('algorithm')!r}, this server "
                f"runs {self.algorithm.name!r}"
            )
        for key in ("num_clients", "clients_per_round"):
            # Absent from states written before they were recorded.
            if key in state and state[key] != getattr(self, key):
                raise ConfigurationError(
                    f"state is for a federation with {key}={state[key]!r}; this "
                    f"server has {key}={getattr(self, key)!r}: resume with the "
                    "configuration that wrote it"
                )
        params = state["params"]
        if params.shape != self.params.shape or params.dtype != self.params.dtype:
            raise ConfigurationError(
                f"state holds a model of shape {tuple(params.shape)} and dtype "
                f"{params.dtype}; this server's model is {tuple(self.params.shape)}, "
                f"{self.params.dtype}"
            )
        self.round = check_int("round", state["round"], minimum=0)
        self.params = params.clone()
        deserialize_model(self.model, self.params)
        self.state = {k: v.clone() for k, v in state["algorithm_state"].items()}
        self.rng.set_state(RNGSuiteState.from_dict(state["rng"]))
        self.aggregator.load_state_dict(state.get("aggregator_state", {}))
        if self.privacy is not None and "privacy" in state:
            self.privacy.load_state_dict(state["privacy"])
        self._pending = []

    def check_uplink(self, update: Any) -> None:
        """Refuse a malformed update before anything is aggregated.

        Cheap (shapes and dtypes only, no pass over the data): ``update`` must
        be a `ClientUpdate` whose parameters, and every ``extra`` tensor the
        algorithm lists in ``uplink_extras`` (SCAFFOLD's ``delta_c``), have the
        global model's shape and dtype, from at least one training sample.
        `blazefl.sim.Simulation` calls it on every client's update, so a
        malformed one becomes that client's failed slot; `load`, `load_round`
        and `global_update` call it for direct callers, once per update
        whichever door it came through (see `blazefl._prechecked`).

        :raises ConfigurationError: (a `ValueError`) naming the client, the
            tensor, and the shape and dtype seen and expected.
        """
        if not isinstance(update, ClientUpdate):
            raise ConfigurationError(
                f"a client sent a {type(update).__name__}; expected a "
                "blazefl.algorithms.ClientUpdate"
            )
        cid = update.cid
        shape, dtype = tuple(self.params.shape), self.params.dtype
        check_like_model(f"client {cid}", "parameters", update.params, shape, dtype)
        for key in self.algorithm.uplink_extras:
            if key not in update.extra:
                raise ConfigurationError(
                    f"client {cid} sent no extra[{key!r}]; {self.algorithm.name} "
                    f"needs it, a tensor of shape {shape} and dtype {dtype}"
                )
            check_like_model(
                f"client {cid}", f"extra[{key!r}]", update.extra[key], shape, dtype
            )
        if self.privacy is not None:
            self.privacy.check_uplink(update)
        n: object = update.num_samples  # typed int, but sent by user code
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ConfigurationError(
                f"client {cid} reported num_samples={n!r}; an update must come "
                "from an integer number >= 1 of training samples"
            )
