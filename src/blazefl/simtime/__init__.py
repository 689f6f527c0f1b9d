"""Simulated time: device profiles for heterogeneous, intermittent clients.

A `ProfileSet` gives every registered client a compute speed (seconds per
sample), download/upload bandwidth and latency, and availability windows,
either generated from the run seed (`generate_profiles`) or read from a trace
file (`read_trace`; FedScale's pickles through `convert_fedscale`).
`client_timing` turns a profile into a client's simulated durations. See
docs/simulated-time.md.
"""

from blazefl import _exports
from blazefl.simtime._profiles import ClientProfile, ProfileSet, generate_profiles
from blazefl.simtime._timing import Timing, client_timing
from blazefl.simtime._traces import convert_fedscale, read_trace, write_trace

__all__ = [
    "ClientProfile",
    "ProfileSet",
    "Timing",
    "client_timing",
    "convert_fedscale",
    "generate_profiles",
    "read_trace",
    "write_trace",
]

_exports.publish(globals())
