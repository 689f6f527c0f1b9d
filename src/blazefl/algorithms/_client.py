"""`FederatedClient`: the one client work every algorithm runs as."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number
from blazefl._versions import version_of
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate, LocalTraining
from blazefl.core import deserialize_model
from blazefl.models import build_model
from blazefl.sim import ClientContext
from blazefl.training import evaluate

if TYPE_CHECKING:
    from blazefl.algorithms._cohort import CohortTrainer

__all__ = ["FederatedClient"]


@dataclass(frozen=True)
class FederatedClient:
    """Native client work: load the broadcast model, then the algorithm's update.

    Each worker builds the model once (in ``ctx.cache``) and overwrites it from
    the broadcast, so the update depends only on the broadcast and the client's
    own RNG suite and state. Pass it to `blazefl.sim.Simulation` as the work.
    """

    algorithm: Algorithm
    model_selector: Any
    model_name: Any
    dataset: Any
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    #: Optional `blazefl.privacy.Privacy`: the same object the server has.
    privacy: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, Algorithm):
            raise ConfigurationError(
                f"algorithm must be a blazefl.algorithms.Algorithm, got "
                f"{self.algorithm!r}"
            )
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        check_number("lr", self.lr)
        if self.privacy is not None:
            from blazefl.privacy import Privacy

            if not isinstance(self.privacy, Privacy):
                raise ConfigurationError(
                    f"privacy must be a blazefl.privacy.Privacy, got {self.privacy!r}"
                )

    def __blazefl_version__(self) -> Hashable:
        """The data set's version: the rest is frozen (see `blazefl._versions`)."""
        return version_of(self.dataset)

    def as_cohort(self) -> CohortTrainer:
        """This work as a cohort trainer, for `blazefl.sim.CohortExecutor`.

        :raises ConfigurationError: when the work cannot be batched (a custom
            ``client_update``, a model with BatchNorm statistics or dropout),
            naming the per-client executors that run it.
        """
        from blazefl.algorithms._cohort import CohortTrainer

        return CohortTrainer(self)

    def _model(self, ctx: ClientContext) -> Any:
        """The worker's cached model (built on first use)."""
        key = ("blazefl-model", str(self.model_name), ctx.device)
        model = ctx.cache.get(key)  # type: ignore[call-overload]
        if model is None:
            model = build_model(self.model_selector, self.model_name).to(ctx.device)
            ctx.cache[key] = model  # type: ignore[index]
        return model

    def evaluate_client(
        self, ctx: ClientContext, broadcast: Broadcast
    ) -> dict[str, float]:
        """Client ``ctx.cid``'s test loss and accuracy, global and personalized.

        For per-client evaluation: the broadcast (global) model on the
        client's own test partition (``acc_global``, ``loss_global``), then,
        when the algorithm returns one from `Algorithm.personalize`, the
        client's own model (``acc_personal``, ``loss_personal``);
        ``num_test_samples`` says how many samples each was measured on (0:
        the client has no test data and no accuracy is reported). Batches
        come in order; ``ctx.rng`` only shuffles the training data a
        personalization step (fine-tuning) may use.
        """
        test = self.dataset.get_dataset("test", ctx.cid)
        metrics: dict[str, float] = {"num_test_samples": float(len(test))}
        if len(test) == 0:
            return metrics
        model = self._model(ctx)
        loader = self.dataset.get_dataloader("test", ctx.cid, self.batch_size)
        deserialize_model(model, broadcast.params)
        metrics["loss_global"], metrics["acc_global"] = evaluate(
            model, loader, ctx.device
        )
        local = self._local_training(ctx, model, broadcast)
        personal = self.algorithm.personalize(ctx, local, broadcast)
        if personal is not None:
            deserialize_model(model, personal)
            metrics["loss_personal"], metrics["acc_personal"] = evaluate(
                model, loader, ctx.device
            )
        return metrics

    def _local_training(
        self, ctx: ClientContext, model: Any, broadcast: Broadcast
    ) -> LocalTraining:
        """``model`` loaded with the broadcast, over the client's training data."""
        num_samples = len(self.dataset.get_dataset("train", ctx.cid))
        deserialize_model(model, broadcast.params)
        loader = self.dataset.get_dataloader(
            "train", ctx.cid, self.batch_size, ctx.rng.torch_cpu
        )
        return LocalTraining(
            model=model,
            loader=loader,
            epochs=self.epochs,
            lr=self.lr,
            device=ctx.device,
            stop_event=ctx.stop_event,
            num_samples=num_samples,
        )

    def __call__(self, ctx: ClientContext, broadcast: Broadcast) -> ClientUpdate:
        model = self._model(ctx)
        num_samples = len(self.dataset.get_dataset("train", ctx.cid))
        if num_samples == 0:
            # An empty client would send its unchanged model with weight 0 (or
            # a NaN average when every sampled client is empty): refuse it,
            # so the coordinator records a failed slot naming it.
            raise ConfigurationError(
                f"client {ctx.cid} has no training samples (its 'train' partition "
                "is empty); every sampled client needs at least one: give it "
                "data, use fewer clients or a partition with a minimum size"
            )
        local = self._local_training(ctx, model, broadcast)
        update = self.algorithm.client_update(ctx, local, broadcast)
        if self.privacy is not None:
            update = self.privacy.client_transform(ctx, broadcast, update)
        ctx.metrics.setdefault("num_samples", float(update.num_samples))
        return replace(update, metrics={**update.metrics, **ctx.metrics})
