"""The matrix's workloads, and a cell: one workload timed in one interpreter.

`WORKLOADS` says what each workload is and how many rounds and repetitions
it runs (full and ``--quick``); `workload_config` makes its `harness.Config`.
`run_cell` runs in the interpreter under test (``<python>
benchmarks/matrix.py --cell``): each variant alone first, for its peak
memory, then the variants with their rounds interleaved
(`harness.run_repeat`), and writes the raw timings as JSON for the driver
(`matrix.py`) to analyse (`matrix_analysis.py`).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import Config, Run, later

#: Flower is compared on these workloads ("both models" of the issue).
FLOWER_WORKLOADS = ("cnn", "resnet18")
#: The Python-heavy workload of the free-threaded scaling target.
PYTHON_HEAVY = "mlp-b1"
#: The interpreters a cell runs in, in report order, with their names.
LABELS = {"GIL": "GIL", "FT": "free-threaded"}

#: What each workload is. Six repetitions give each ratio 18-24 paired cycles:
#: with three (9 pairs) one slow repetition moved a ratio by 5% and its
#: bootstrap interval did not show it. The full matrix takes about 18 minutes
#: on 2 idle cores without Flower (17.6 measured); --quick under 3 (2.5 min).
WORKLOADS: dict[str, dict[str, Any]] = {
    "cnn": {
        "about": "small CNN (`ModelZoo` 'cnn', 1x12x12 synthetic images)",
        "config": {
            "clients": 30,
            "sampled": 10,
            "model": "cnn",
            "epochs": 1,
            "batch_size": 16,
            "lr": 0.05,
            "samples_per_client": 128,
        },
        "full": (6, 6),  # (rounds, repetitions)
        "quick": (2, 1),
    },
    "resnet18": {
        "about": "ResNet-18 (11.2 M parameters, 45 MB per payload; 3x32x32 "
        "`SyntheticCIFAR10`), little local work: communication-heavy",
        "config": {
            "clients": 8,
            "sampled": 4,
            "model": "resnet18",
            "epochs": 1,
            "batch_size": 2,
            "lr": 0.01,
            "samples_per_client": 2,
            "dataset": "cifar",
            "test_samples": 8,
            "eval_batch_size": 8,
        },
        "full": (5, 6),
        "quick": (2, 1),
        "quick_config": {"clients": 4, "sampled": 2},
    },
    "mlp-b1": {
        "about": "small MLP (`ModelZoo` 'mlp', 144-64-10) at batch size 1: "
        "Python-heavy",
        "config": {
            "clients": 20,
            "sampled": 10,
            "model": "mlp",
            "epochs": 1,
            "batch_size": 1,
            "lr": 0.02,
            "samples_per_client": 48,
            "test_samples": 100,
            "eval_batch_size": 100,
        },
        "full": (6, 6),
        "quick": (2, 1),
    },
}


def workload_config(
    name: str,
    workers: Sequence[int],
    quick: bool,
    rounds: int | None = None,
    repeats: int | None = None,
) -> Config:
    spec = WORKLOADS[name]
    default_rounds, default_repeats = spec["quick" if quick else "full"]
    fields = {**spec["config"], **(spec.get("quick_config", {}) if quick else {})}
    return Config(
        rounds=rounds or default_rounds,
        repeats=repeats or default_repeats,
        workers=tuple(workers),
        seed=0,
        quick=quick,
        **fields,
    )


# -- a cell: one interpreter, one workload (runs in that interpreter) --------


def run_cell(cfg: Config, memory_rounds: int, out: Path) -> None:
    """Peak memory of each variant alone, then the interleaved timing runs."""
    import structlog
    import torch
    from harness import (
        LoadMonitor,
        Workload,
        machine_info,
        measure_memory,
        run_repeat,
        variants,
    )

    from blazefl.reproducibility import set_torch_threads
    from blazefl.sim import gil_enabled

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    set_torch_threads(1)
    info = machine_info()
    plan = variants(cfg)
    began = time.perf_counter()
    memory = []
    if memory_rounds:  # first: see measure_memory
        for name, make in plan:
            mem = measure_memory(cfg, name, make, memory_rounds)
            memory.append(asdict(mem))
            print(
                f"  memory {name:>14}: peak {mem.peak_rss_mib or 0:7.0f} MiB over "
                f"{mem.processes} process(es){'' if mem.ok else ' (FAILED)'}",
                flush=True,
            )
    wl = Workload(cfg)
    runs: list[Run] = []
    reference: list[torch.Tensor] = []
    monitor = LoadMonitor()
    for repeat in range(cfg.repeats):
        batch = run_repeat(wl, plan, repeat, reference, monitor)
        runs.extend(batch)
        print(
            f"  rep {repeat}: "
            + ", ".join(
                f"{r.variant} {statistics.median(later(r)) * 1e3:.0f}" for r in batch
            )
            + " ms (rounds >= 2 median)",
            flush=True,
        )
    info["gil_enabled_end"] = gil_enabled()
    result = {
        "machine": info,
        "config": asdict(cfg),
        "elapsed_s": time.perf_counter() - began,
        "bitwise_identical": True,  # run_repeat raises otherwise
        "variants": [n for n, _ in plan],
        "memory": memory,
        "runs": [asdict(r) for r in runs],
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
