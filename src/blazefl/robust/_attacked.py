"""Mixing an attack into a federation: who attacks, and their client work.

`draw_attackers` fixes the attackers once per run from the run seed, on a
server-side stream of their own; `AttackedClient` wraps the federation's
client work so that those clients run the attack and every other client is
untouched. Nothing else changes: any algorithm, any executor, any aggregator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_fraction, check_int, check_seed
from blazefl._versions import version_of
from blazefl.algorithms import ClientUpdate
from blazefl.robust._attacks import Attack

if TYPE_CHECKING:
    import torch

    from blazefl.sim import ClientContext

__all__ = ["ATTACKER_STREAM", "AttackedClient", "PoisonedDataset", "draw_attackers"]

#: The key of the attackers' stream: ``derive_seed(seed, ATTACKER_STREAM)``.
ATTACKER_STREAM = 0xA77AC4


def draw_attackers(num_clients: int, fraction: float, seed: int) -> tuple[int, ...]:
    """⌊fraction·num_clients⌋ distinct client ids (sorted), drawn once per run.

    The draw comes from the run seed on a stream of its own
    (``derive_seed(seed, ATTACKER_STREAM)``), not from the server's sampling
    stream, so an attacked run samples the same clients every round as the
    clean run it is compared with. The same seed gives the same attackers in
    every executor and after ``--resume``.
    """
    import random

    from blazefl.reproducibility import derive_seed

    n = check_int("num_clients", num_clients)
    p = check_fraction(
        "fraction",
        fraction,
        wording="the attack fraction must be a finite number in [0, 1), got {value!r}",
    )
    k = math.floor(p * n + 1e-9)  # 0.29 * 100 is 28.999999999999996
    rng = random.Random(derive_seed(check_seed("seed", seed), ATTACKER_STREAM))
    return tuple(sorted(rng.sample(range(n), k)))


@dataclass(frozen=True)
class PoisonedDataset:
    """A data set whose training partitions are ``attack.poison``-ed copies.

    Wraps the federation's data set for the attackers' work only: the
    test split and everything else read through to ``base``. Rows are copied
    and poisoned when a partition is asked for (a client's rows: small).
    """

    base: Any
    attack: Attack

    def __getattr__(self, name: str) -> Any:
        if name in ("base", "attack") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __blazefl_version__(self) -> Hashable:
        return ("poisoned", version_of(self.base))

    def get_dataset(self, type_: str, cid: int | None) -> Any:
        from blazefl.data._loader import TensorView

        view = self.base.get_dataset(type_, cid)
        if type_ != "train" or cid is None:
            return view
        if not isinstance(view, TensorView):
            raise ConfigurationError(
                f"{self.attack!r} poisons training data held as tensors (the "
                f"built-in data sets); client {cid}'s partition is a "
                f"{type(view).__name__}"
            )
        x, y = self.attack.poison(
            view.data[view.indices], view.targets[view.indices], self.base
        )
        return TensorView(x, y)

    def get_dataloader(
        self,
        type_: str,
        cid: int | None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Any:
        if type_ != "train" or cid is None:
            return self.base.get_dataloader(type_, cid, batch_size, generator)
        from blazefl.data._loader import make_loader

        dataset = self.get_dataset(type_, cid)
        return make_loader(dataset, batch_size, generator=generator, shuffle=True)


@dataclass(frozen=True)
class AttackedClient:
    """Client work in which the clients in ``attackers`` run ``attack``.

    ``work`` is the federation's honest client work (a
    `blazefl.algorithms.FederatedClient`; for an attack that only tampers
    with the upload, any work returning a `ClientUpdate`). Honest clients
    call it unchanged; an attacker calls it on poisoned data (label flip,
    backdoor), then uploads ``attack.tamper`` of what it trained, with noise
    drawn from its own ``ctx.rng``. Pass it to `blazefl.sim.Simulation` in
    place of ``work``::

        attackers = draw_attackers(num_clients, 0.2, seed)
        Simulation(server, AttackedClient(client, SignFlip(), attackers), ...)
    """

    work: Any
    attack: Attack
    attackers: frozenset[int]

    def __init__(self, work: Any, attack: Attack, attackers: Iterable[int]) -> None:
        if not isinstance(attack, Attack):
            raise ConfigurationError(
                f"attack must be a blazefl.robust.Attack, got {attack!r}"
            )
        if not callable(work):
            raise ConfigurationError(f"work must be client work, got {work!r}")
        ids = frozenset(check_int("attacker id", a, minimum=0) for a in attackers)
        if attack.poisons_data:
            dataset = getattr(work, "dataset", None)
            if not dataclasses.is_dataclass(work) or dataset is None:
                raise ConfigurationError(
                    f"{attack!r} poisons the attackers' training data, so the work "
                    "must be a dataclass with a dataset field (FederatedClient); "
                    f"got {type(work).__name__}"
                )
            attack.check_dataset(dataset)
            size = getattr(dataset, "num_clients", None)
            if isinstance(size, int) and ids and max(ids) >= size:
                raise ConfigurationError(
                    f"attacker id {max(ids)} is not a client of the data set "
                    f"({size} clients)"
                )
        object.__setattr__(self, "work", work)
        object.__setattr__(self, "attack", attack)
        object.__setattr__(self, "attackers", ids)

    def __blazefl_version__(self) -> Hashable:
        return version_of(self.work)

    def __call__(self, ctx: ClientContext, payload: Any) -> ClientUpdate:
        if ctx.cid not in self.attackers:
            return self.work(ctx, payload)  # type: ignore[no-any-return]
        work = self.work
        if self.attack.poisons_data:
            work = dataclasses.replace(
                work, dataset=PoisonedDataset(work.dataset, self.attack)
            )
        update = work(ctx, payload)
        if not isinstance(update, ClientUpdate):
            raise ConfigurationError(
                f"{self.attack!r} tampers with a ClientUpdate; the work returned "
                f"a {type(update).__name__}"
            )
        params = self.attack.tamper(payload.params, update.params, ctx.rng)
        return dataclasses.replace(update, params=params)
