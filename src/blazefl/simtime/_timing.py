"""How long one client takes in virtual time: download + compute + upload.

The formulas (docs/simulated-time.md)::

    download = latency_s + 8 · model_bytes / download_bps
    compute  = num_samples · epochs · compute_s_per_sample
    upload   = latency_s + 8 · model_bytes / upload_bps

``num_samples`` is the client's real training-set size and ``model_bytes`` the
real byte size of the model the server sends; the update a client returns is
taken to be the same size (it is for every built-in algorithm), which lets the
scheduler know a client's finish time when it dispatches it.
"""

from __future__ import annotations

from dataclasses import dataclass

from blazefl.simtime._profiles import ClientProfile

__all__ = ["Timing", "client_timing"]


@dataclass(frozen=True, slots=True)
class Timing:
    """One client's simulated durations, in virtual seconds."""

    download: float
    compute: float
    upload: float

    @property
    def total(self) -> float:
        return self.download + self.compute + self.upload


def client_timing(
    profile: ClientProfile, *, num_samples: int, epochs: int, model_bytes: int
) -> Timing:
    """The durations of one round of local work on ``profile``'s device."""
    bits = 8.0 * model_bytes
    return Timing(
        download=profile.latency_s + bits / profile.download_bps,
        compute=num_samples * epochs * profile.compute_s_per_sample,
        upload=profile.latency_s + bits / profile.upload_bps,
    )
