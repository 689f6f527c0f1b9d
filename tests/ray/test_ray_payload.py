"""On Ray actors too: a client that writes into its payload fails and the
server is bitwise unchanged; a client's own sys.exit() or KeyboardInterrupt
is a failed client, and its actor serves on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from blazefl import PayloadModifiedError, RoundFailedError
from blazefl.sim import RayExecutor, Simulation, ThreadExecutor

# "ray.exceptions", not "ray": without Ray installed, tests/ray itself would
# import as a namespace package named ray.
pytest.importorskip("ray.exceptions")

from ray_fakes import Probe, federation

from misbehave import Misbehave

pytestmark = [
    pytest.mark.usefixtures("ray_local"),
    pytest.mark.anyio,
    pytest.mark.anyio_backends("asyncio"),
]

# FedAvg with seed 0 samples (0, 3, 5), (2, 3, 4), (2, 3, 5).
ROUND1_CLIENT = 3


async def test_payload_write_fails_the_client_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """The writer fails with PayloadModifiedError; the rerun matches threads."""
    reference, reference_client = federation()
    async with Simulation(
        reference, reference_client, executor=ThreadExecutor(2), seed=0
    ) as threads:
        await threads.run()
    server, client = federation()
    work = Misbehave(client, str(tmp_path))
    sim = Simulation(server, work, executor=RayExecutor(2), seed=0)
    async with sim:
        await sim.run_round()
        before = server.params.clone()
        work.arm("write", cid=ROUND1_CLIENT, round=1, once=True)
        with pytest.raises(RoundFailedError) as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert isinstance(failure.exception(), PayloadModifiedError)
        assert f"client {ROUND1_CLIENT} wrote into the round's payload" in str(failure)
        assert torch.equal(server.params, before)
        await sim.run()
    assert torch.equal(server.params, reference.params)


@pytest.mark.parametrize(
    ("fault", "type_name"),
    [("sys_exit", "SystemExit"), ("interrupt", "KeyboardInterrupt")],
)
async def test_client_exit_is_a_failed_client(
    fault: str, type_name: str, tmp_path: Path
) -> None:
    """The actor that ran it stays up and serves the rerun."""
    server, client = federation()
    work = Misbehave(client, str(tmp_path))
    work.arm(fault, cid=0, round=0, once=True)
    sim = Simulation(server, Probe(work), executor=RayExecutor(1), seed=0)
    async with sim:
        with pytest.raises(RoundFailedError) as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert (failure.kind, failure.type) == ("error", type_name)
        result = await sim.run_round()
    assert result.failures == ()
    assert len({c.metrics["pid"] for c in result.clients}) == 1
