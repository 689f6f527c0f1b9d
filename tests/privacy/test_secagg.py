"""Secure aggregation: the unmasked sum is the plain fixed-point sum exactly,
with and without dropped clients, and the server sees only masked vectors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from privacy_fakes import DropClient, dataset, run

from blazefl import ConfigurationError
from blazefl.algorithms import FedAvg, FederatedClient
from blazefl.models import ModelZoo
from blazefl.privacy import MODULUS_BITS, Privacy
from blazefl.privacy._secagg import MODULUS, decode, encode, mask, masked_sum, pair_seed

COHORT = [2, 5, 7, 11, 13]


def _vectors(size: int = 50) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        cid: torch.randn(size, generator=g, dtype=torch.float64) * 3 for cid in COHORT
    }


def _uploads(vectors: dict[int, torch.Tensor], arrived: list[int]) -> list[Any]:
    return [
        (
            cid,
            mask(
                encode(vectors[cid], len(COHORT)),
                cid,
                COHORT,
                secret=9,
                round_index=4,
            ),
        )
        for cid in arrived
    ]


@pytest.mark.parametrize(
    "arrived", [COHORT, [2, 7, 11, 13], [5, 13]], ids=["none", "one", "three"]
)
def test_unmasked_sum_is_the_plain_fixed_point_sum(arrived: list[int]) -> None:
    """With 0, 1 or 3 of 5 clients dropped after masking, the unmasked sum
    equals the survivors' fixed-point sum modulo 2^48, bit for bit."""
    vectors = _vectors()
    total = masked_sum(_uploads(vectors, arrived), COHORT, secret=9, round_index=4)
    plain = torch.zeros(50, dtype=torch.int64)
    for cid in arrived:
        plain = torch.remainder(plain + encode(vectors[cid], len(COHORT)), MODULUS)
    assert torch.equal(total, plain)
    exact = sum(vectors[c] for c in arrived)
    assert torch.allclose(decode(total), exact, atol=len(arrived) * 2.0**-24)


def test_a_masked_upload_hides_its_vector() -> None:
    """A masked vector looks nothing like the encoding it hides (uniform mod M)."""
    vectors = _vectors(2000)
    (cid, masked), *_ = _uploads(vectors, COHORT)
    encoded = encode(vectors[cid], len(COHORT))
    assert not torch.equal(masked, encoded)
    # Encoded values sit near 0 or near M; masked ones spread over [0, M).
    assert masked.double().mean() / MODULUS == pytest.approx(0.5, abs=0.05)


def test_dropped_masks_not_removed_would_garble_the_sum() -> None:
    """Without recovery (a dropped client passed as never sampled) the
    masks do not cancel: what recovery removes is real."""
    vectors = _vectors()
    arrived = [2, 7, 11, 13]
    uploads = _uploads(vectors, arrived)
    wrong = masked_sum(uploads, arrived, secret=9, round_index=4)
    right = masked_sum(uploads, COHORT, secret=9, round_index=4)
    assert not torch.equal(wrong, right)


def test_pair_seeds_are_shared_and_distinct() -> None:
    """Both ends of a pair derive the same seed; pairs and rounds differ."""
    assert pair_seed(1, 0, 3, 8) == pair_seed(1, 0, 8, 3)
    assert len({pair_seed(1, r, a, 8) for r in (0, 1) for a in (2, 3)}) == 4


def test_a_value_that_could_wrap_the_sum_is_refused() -> None:
    """Fixed point holds |x| < 2^23/m; beyond, the client refuses to encode."""
    assert MODULUS_BITS == 48
    with pytest.raises(ConfigurationError, match=r"does not fit the fixed-point"):
        encode(torch.tensor([2.0**23 / 4], dtype=torch.float64), 4)


def test_secagg_fedavg_matches_plain_fedavg() -> None:
    """FedAvg under secure aggregation ends within fixed-point rounding of
    plain FedAvg (sample-count weights travel inside the masked vector)."""
    data = dataset()
    plain, _ = run(Privacy(), data, rounds=2)
    secure, _ = run(Privacy(secagg=True, secret=3), data, rounds=2)
    assert plain.privacy is None
    assert not torch.equal(plain.params, secure.params)
    assert torch.allclose(plain.params, secure.params, atol=1e-5)
    stats = secure.privacy.last_secagg
    assert stats is not None
    assert (stats.cohort, stats.dropped) == (4, 0)
    assert stats.extra_bytes > 4 * stats.elements * 4


def test_secagg_recovers_from_a_dropped_client() -> None:
    """A dropped client's masks are removed: the round aggregates the
    survivors, as the plain run with the same client dropped does."""
    data = dataset()
    results = {}
    for privacy in (Privacy(), Privacy(secagg=True, secret=3)):
        work = DropClient(
            FederatedClient(
                FedAvg(),
                ModelZoo(),
                "mlp",
                data,
                epochs=1,
                batch_size=16,
                lr=0.1,
                privacy=privacy,
            ),
            cid=3,
        )
        server, rounds = run(
            privacy, data, rounds=2, client=work, on_client_failure="drop"
        )
        assert any(r.failures for r in rounds)
        results[privacy.secagg] = server
    assert torch.allclose(results[False].params, results[True].params, atol=1e-5)
