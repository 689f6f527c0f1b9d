"""Simulated time: device profiles, a virtual clock, deadlines, stragglers and
asynchronous FL (FedBuff, FedAsync), all bitwise deterministic::

    profiles = generate_profiles(num_clients=100, seed=0)
    time = SimTime(profiles, mode="async", buffer_size=10, concurrency=20)
    async with Simulation(server, client, seed=0, time=time) as sim:
        await sim.run_until(3600.0)   # one virtual hour
        print(sim.now)

The order in which updates are applied follows the virtual clock (virtual
finish time, then client id), never the order in which real training finished,
so results are the same on every executor and worker count. See
docs/simulated-time.md for the model of time and its formulas.
"""

from blazefl import _exports
from blazefl.algorithms._staleness import STALENESS_KINDS, Staleness
from blazefl.simtime._async import AsyncScheduler, Flight, StepPlan
from blazefl.simtime._clock import VirtualClock
from blazefl.simtime._config import Mode, SimTime
from blazefl.simtime._profiles import ClientProfile, ProfileSet, generate_profiles
from blazefl.simtime._sync import RoundPlan, plan_round
from blazefl.simtime._timing import Timing, client_timing
from blazefl.simtime._traces import convert_fedscale, read_trace, write_trace

__all__ = [
    "STALENESS_KINDS",
    "AsyncScheduler",
    "ClientProfile",
    "Flight",
    "Mode",
    "ProfileSet",
    "RoundPlan",
    "SimTime",
    "Staleness",
    "StepPlan",
    "Timing",
    "VirtualClock",
    "client_timing",
    "convert_fedscale",
    "generate_profiles",
    "plan_round",
    "read_trace",
    "write_trace",
]

_exports.publish(globals())
