"""What the benchmarks share: one FedAvg workload, the bare loop, the timing loop.

`overhead.py` (one interpreter, one workload) and `matrix.py` (executors x
workers x workloads x interpreters, plus Flower) both measure blazefl.sim
against a *bare* FedAvg loop written by hand that does the same arithmetic.
Everything that makes those numbers comparable lives in the ``harness_*``
modules beside this one, one idea each, and the scripts import it from here:

* `harness_config`: `Config` (the workload's settings), `Run` (one timed
  run), the targets;
* `harness_load`: `LoadMonitor`, how much CPU *other* processes took while a
  cycle ran, and `QUIET`;
* `harness_workload`: `Workload` (the data set, model and hyper-parameters
  every variant shares) and `Bare`, the hand-written loop;
* `harness_timing`: `Sim` (the same workload through `Simulation` on one
  executor) and `run_repeat`, one repetition with every variant's rounds
  interleaved in a rotating order, the final models checked bit for bit;
* `harness_stats`: statistics over rounds >= 2 (`summarise`, `paired`);
* `harness_machine`: `machine_info`, `run_info` and `update_readme` for the
  marked tables in ``benchmarks/README.md``;
* `harness_memory`: `measure_memory`, one variant's peak RSS in a fork.

Not a package: the scripts import it from their own directory, which Python
puts first on ``sys.path``, so the ``harness_*`` modules are found the same way.
"""

from __future__ import annotations

from harness_config import (
    PROCESS_TARGET,
    THREAD_TARGET,
    Config,
    Run,
    config_from_json,
)
from harness_load import QUIET, LoadMonitor
from harness_machine import (
    HERE,
    README,
    cpu_model,
    machine_info,
    ms,
    run_info,
    update_readme,
)
from harness_memory import Memory, measure_memory
from harness_stats import later, paired, quantile, summarise
from harness_timing import (
    Sim,
    SimRunner,
    interleave,
    plan_variants,
    run_repeat,
    variants,
)
from harness_workload import Bare, BareLoop, Workload

__all__ = [
    "HERE",
    "PROCESS_TARGET",
    "QUIET",
    "README",
    "THREAD_TARGET",
    "Bare",
    "BareLoop",
    "Config",
    "LoadMonitor",
    "Memory",
    "Run",
    "Sim",
    "SimRunner",
    "Workload",
    "config_from_json",
    "cpu_model",
    "interleave",
    "later",
    "machine_info",
    "measure_memory",
    "ms",
    "paired",
    "plan_variants",
    "quantile",
    "run_info",
    "run_repeat",
    "summarise",
    "update_readme",
    "variants",
]
