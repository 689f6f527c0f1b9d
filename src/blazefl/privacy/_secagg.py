"""Secure aggregation, simulated: pairwise additive masks over fixed-point integers.

As in Bonawitz et al. 2017 ("Practical Secure Aggregation for
Privacy-Preserving Machine Learning") and SecAgg+ (Bell et al. 2020), each
sampled client i encodes its vector to integers modulo M and adds, for every
other client j of the round's cohort, ±PRG(s_ij) (+ when i < j, − when i > j),
where s_ij is the seed the pair agrees on. The server adds the masked
vectors modulo M: the masks cancel pairwise, and only the sum is revealed.
When a client drops out after the masks were fixed, its partners' masks with
it would not cancel; the survivors reveal those pair seeds (SecAgg+'s
recovery) and the server subtracts them. The server code only ever holds
masked vectors and the unmasked sum.

Fixed point: x ↦ round(x·2^SCALE_BITS) mod 2^MODULUS_BITS, i.e. a resolution
of 2⁻²⁴ ≈ 6·10⁻⁸ and sums in (−2²³, 2²³); a client refuses a value whose
magnitude could wrap the round's sum (|x| ≥ 2²³/m).

What is simulated and what is not: the pair seed s_ij stands for the
Diffie-Hellman agreement of the protocol; here it is SHA-256 of a per-run
secret, the round and the pair, so masks are reproducible bit for bit. The
self-masks that protect a late client's input, the key exchange and the
secret sharing are not simulated (their bytes are counted, see
`SecAggStats`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blazefl._exceptions import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MODULUS_BITS",
    "SCALE_BITS",
    "SecAggStats",
    "decode",
    "encode",
    "mask",
    "masked_sum",
    "pair_seed",
]

MODULUS_BITS = 48
SCALE_BITS = 24
MODULUS = 1 << MODULUS_BITS
SCALE = float(1 << SCALE_BITS)
#: Bytes a client sends per element of a masked vector (int64 on the wire).
MASKED_ELEMENT_BYTES = 8
#: Bytes per seed revealed in a dropout recovery, and per public key.
SEED_BYTES = 32


def encode(values: torch.Tensor, cohort_size: int) -> torch.Tensor:
    """``values`` (float64) as fixed-point integers modulo M (int64)."""
    import torch

    bound = (1 << (MODULUS_BITS - SCALE_BITS - 1)) / cohort_size
    peak = float(values.abs().max()) if values.numel() else 0.0
    if not peak < bound:
        raise ConfigurationError(
            f"secure aggregation: a value of magnitude {peak:.4g} does not fit "
            f"the fixed-point range (|x| < 2^{MODULUS_BITS - SCALE_BITS - 1}/"
            f"{cohort_size} = {bound:.4g} for {cohort_size} clients); clip the "
            "updates (--dp central) or sample fewer clients"
        )
    fixed = torch.round(values.to(torch.float64) * SCALE).to(torch.int64)
    return torch.remainder(fixed, MODULUS)


def decode(total: torch.Tensor) -> torch.Tensor:
    """A sum modulo M back to float64 (the upper half of the ring is negative)."""
    import torch

    signed = torch.where(total >= MODULUS // 2, total - MODULUS, total)
    return signed.to(torch.float64) / SCALE


def pair_seed(secret: int, round_index: int, a: int, b: int) -> int:
    """The seed clients ``a`` and ``b`` share in a round (order-free)."""
    lo, hi = min(a, b), max(a, b)
    digest = hashlib.sha256(
        f"blazefl-secagg:{secret}:{round_index}:{lo}:{hi}".encode()
    ).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _prg(seed: int, size: int) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, MODULUS, (size,), generator=generator, dtype=torch.int64)


def _pair_mask(
    secret: int, round_index: int, me: int, other: int, size: int
) -> torch.Tensor:
    """My share of the pair's mask: +PRG below the partner, −PRG above."""
    stream = _prg(pair_seed(secret, round_index, me, other), size)
    return stream if me < other else MODULUS - stream


#: Terms in [0, M] added before reducing modulo M: 2^14 of them stay below
#: 2^62 (M = 2^48), far from int64's limit.
_REDUCE_EVERY = 1 << 14


def mask(
    encoded: torch.Tensor,
    me: int,
    cohort: Sequence[int],
    *,
    secret: int,
    round_index: int,
) -> torch.Tensor:
    """Client ``me``'s upload: its encoded vector plus its pairwise masks."""
    import torch

    if me not in cohort:
        raise ConfigurationError(
            f"secure aggregation: client {me} is not in the round's cohort"
        )
    out = encoded.clone()
    for k, other in enumerate(o for o in cohort if o != me):
        out.add_(_pair_mask(secret, round_index, me, other, out.numel()))
        if k % _REDUCE_EVERY == _REDUCE_EVERY - 1:
            out = torch.remainder(out, MODULUS)
    return torch.remainder(out, MODULUS)


def masked_sum(
    uploads: Sequence[tuple[int, torch.Tensor]],
    cohort: Sequence[int],
    *,
    secret: int,
    round_index: int,
) -> torch.Tensor:
    """The survivors' plain fixed-point sum from their masked uploads.

    ``uploads`` are (cid, masked vector) of the clients that arrived; every
    other member of ``cohort`` dropped out, and the masks survivors share with
    it are removed (their pair seeds revealed by the survivors).
    """
    import torch

    if not uploads:
        raise ConfigurationError("secure aggregation needs at least one upload")
    arrived = [cid for cid, _ in uploads]
    if len(set(arrived)) != len(arrived) or not set(arrived) <= set(cohort):
        raise ConfigurationError(
            f"secure aggregation: uploads from {arrived} do not match the "
            f"round's cohort {list(cohort)}"
        )
    size = uploads[0][1].numel()
    total = torch.zeros(size, dtype=torch.int64)
    terms = [vector for _, vector in uploads]
    dropped = [cid for cid in cohort if cid not in set(arrived)]
    for survivor in arrived:
        for gone in dropped:
            # Subtracting a share is adding its complement modulo M.
            share = _pair_mask(secret, round_index, survivor, gone, size)
            terms.append(MODULUS - share)
    for k, term in enumerate(terms):
        total.add_(term)
        if k % _REDUCE_EVERY == _REDUCE_EVERY - 1:
            total = torch.remainder(total, MODULUS)
    return torch.remainder(total, MODULUS)


@dataclass(frozen=True, slots=True)
class SecAggStats:
    """What secure aggregation cost in one round, beyond a plain float32 upload.

    ``extra_bytes`` counts, per arrived client, the masked int64 vector less a
    float32 one, plus the key advertisement of the cohort (one public key per
    pair and direction) and the pair seeds revealed for dropped clients;
    ``seconds`` is the server's unmasking time.
    """

    cohort: int
    dropped: int
    elements: int
    extra_bytes: int
    seconds: float

    @staticmethod
    def of(cohort: int, arrived: int, elements: int, seconds: float) -> SecAggStats:
        dropped = cohort - arrived
        uplink = arrived * elements * (MASKED_ELEMENT_BYTES - 4)
        keys = cohort * (cohort - 1) * SEED_BYTES
        recovery = arrived * dropped * SEED_BYTES
        return SecAggStats(cohort, dropped, elements, uplink + keys + recovery, seconds)
