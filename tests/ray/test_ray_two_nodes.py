"""RayExecutor on a two-node cluster on one machine: a head node and a second
node joined with ``ray start --address``, both on 127.0.0.1.

The module shuts the session's local instance down first (one Ray connection
per process) and stops both nodes by process id at the end; the next test
that needs the local instance starts it again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from blazefl.sim import RayExecutor, ThreadExecutor

# "ray.exceptions", not "ray": without Ray installed, tests/ray itself would
# import as a namespace package named ray.
pytest.importorskip("ray.exceptions")

from ray_fakes import TwoNodes, final_params, shut_down_local

import ray


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    assert not shut_down_local()
    # Short: Ray's socket paths under the temp dir must stay under 108 bytes.
    temp = Path(tempfile.mkdtemp(prefix="bflray-"))
    cluster = TwoNodes(temp)
    try:
        cluster.start()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        left = cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes still running after the stop: {left}"


def test_clients_run_on_both_nodes_bitwise_equal(two_nodes: TwoNodes) -> None:
    """Clients land on both nodes; the final model equals the thread executor's."""
    expected, _ = final_params(ThreadExecutor(2))
    executor = RayExecutor(
        address=two_nodes.address, init_kwargs={"_node_ip_address": "127.0.0.1"}
    )
    params, results = final_params(executor)
    assert executor.max_workers == 2  # one CPU per node, one per client
    nodes = {c.worker.split("@")[1] for r in results for c in r.clients}
    assert len(nodes) == 2, nodes
    assert torch.equal(params, expected)
    assert not ray.is_initialized(), "the executor did not disconnect on close"
