"""Bad input fails early with ConfigurationError saying what was wrong."""

from __future__ import annotations

from typing import Any

import pytest

from blazefl import (
    BlazeFLError,
    ConfigurationError,
    SimulationFinishedError,
)
from blazefl.sim import (
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)
from fakes import FedAvgHandler, ScriptedWork

pytestmark = pytest.mark.anyio_backends("asyncio")


def _sim(**kwargs: Any) -> Simulation[Any, Any]:
    kwargs.setdefault("executor", InlineExecutor())
    return Simulation(FedAvgHandler(rounds=1), ScriptedWork(), **kwargs)


# -- executors -------------------------------------------------------------


@pytest.mark.parametrize("executor", [ThreadExecutor, ProcessExecutor])
@pytest.mark.parametrize("workers", [0, -1, "x", 1.5, True])
def test_executor_rejects_a_bad_worker_count(executor: Any, workers: Any) -> None:
    """max_workers must be an int >= 1 (not a bool, str or float)."""
    with pytest.raises(
        ConfigurationError, match=r"^max_workers must be an integer >= 1, got "
    ):
        executor(workers)


@pytest.mark.parametrize("executor", [InlineExecutor, ThreadExecutor, ProcessExecutor])
def test_executor_rejects_a_bad_torch_thread_count(executor: Any) -> None:
    """torch_threads must be an int >= 1."""
    with pytest.raises(
        ConfigurationError, match=r"^torch_threads must be an integer >= 1, got 0$"
    ):
        executor(torch_threads=0)


def test_process_executor_refuses_fork() -> None:
    """fork is refused with the allowed start methods named."""
    with pytest.raises(
        ConfigurationError,
        match=r"^start_method must be one of \('spawn', 'forkserver'\), got 'fork'$",
    ):
        ProcessExecutor(1, start_method="fork")


def test_process_executor_rejects_a_negative_stop_grace() -> None:
    """stop_grace must be >= 0."""
    with pytest.raises(
        ConfigurationError, match=r"^stop_grace must be a finite number of seconds >= 0"
    ):
        ProcessExecutor(1, stop_grace=-1)


# -- Simulation arguments --------------------------------------------------


def test_handler_must_be_a_server_handler() -> None:
    """A handler without the BlazeFL methods is refused, naming the missing one."""
    with pytest.raises(ConfigurationError, match=r"has no sample_clients\(\) method"):
        Simulation(object(), ScriptedWork())


def test_work_must_be_callable_or_a_trainer() -> None:
    """Client code that is neither work nor a trainer is refused."""
    with pytest.raises(ConfigurationError, match=r"^cannot run 42 as client work"):
        Simulation(FedAvgHandler(), 42)


def test_unknown_failure_policy_is_refused() -> None:
    """on_client_failure must be 'fail_round' or 'drop'."""
    with pytest.raises(
        ConfigurationError,
        match=(
            r"^on_client_failure must be one of \('fail_round', 'drop'\), "
            r"got 'skip'$"
        ),
    ):
        _sim(on_client_failure="skip")


def test_drop_needs_a_handler_with_load_round() -> None:
    """drop without load_round on the handler is refused at construction."""

    class NoLoadRound:
        def sample_clients(self) -> list[int]:
            return [0]

        def downlink_package(self) -> None:
            return None

        def load(self, package: Any) -> bool:
            return True

        def is_stopped(self) -> bool:
            return False

    with pytest.raises(
        ConfigurationError,
        match=r"needs a handler with load_round.*NoLoadRound has none",
    ):
        Simulation(NoLoadRound(), ScriptedWork(), on_client_failure="drop")


@pytest.mark.parametrize("value", [0, -1, True, "2"])
def test_min_clients_must_be_a_positive_int(value: Any) -> None:
    """min_clients must be an int >= 1."""
    with pytest.raises(
        ConfigurationError, match=r"^min_clients must be an integer >= 1, got "
    ):
        _sim(on_client_failure="drop", min_clients=value)


@pytest.mark.parametrize("value", [-1, True, 1.0, "0"])
def test_seed_must_be_a_non_negative_int(value: Any) -> None:
    """The run seed must be an int >= 0."""
    with pytest.raises(
        ConfigurationError, match=r"^seed must be an integer in \[0, 2\*\*63\), got "
    ):
        _sim(seed=value)


@pytest.mark.parametrize("value", [2**63, 2**128])
def test_seed_beyond_the_run_seed_range_is_refused_at_construction(
    value: int,
) -> None:
    """A seed past SEED_BOUND (2**63) fails at construction, not in round 0."""
    with pytest.raises(ConfigurationError, match=r"seed must be an integer in"):
        _sim(seed=value)


@pytest.mark.parametrize("name", ["round_timeout", "client_timeout"])
@pytest.mark.parametrize("value", [0, -0.5, float("nan")])
def test_timeouts_must_be_positive(name: str, value: float) -> None:
    """Timeouts must be positive numbers of seconds (or None)."""
    with pytest.raises(
        ConfigurationError,
        match=rf"^{name} must be a finite number of seconds > 0, got ",
    ):
        _sim(**{name: value})


@pytest.mark.parametrize("name", ["round_timeout", "client_timeout"])
def test_non_numeric_timeouts_are_configuration_errors(name: str) -> None:
    """A timeout given as a string is a ConfigurationError naming the argument."""
    with pytest.raises(ConfigurationError, match=rf"^{name} must be"):
        _sim(**{name: "5"})


def test_executor_must_be_an_executor() -> None:
    """executor='threads' (a name, not an Executor) is refused at construction."""
    with pytest.raises(ConfigurationError, match=r"executor"):
        Simulation(FedAvgHandler(), ScriptedWork(), executor="threads")  # type: ignore[arg-type]


# -- misuse at run time ----------------------------------------------------


@pytest.mark.anyio
async def test_run_round_before_start_is_refused() -> None:
    """run_round outside `async with` says how to start the simulation."""
    with pytest.raises(
        ConfigurationError, match=r"^the simulation is not started: use `async with"
    ):
        await _sim().run_round()


@pytest.mark.anyio
async def test_run_round_after_close_is_refused() -> None:
    """run_round after the simulation closed is refused the same way."""
    sim = _sim()
    async with sim:
        pass
    with pytest.raises(ConfigurationError, match=r"the simulation is not started"):
        await sim.run_round()


class _ScriptedSampler(FedAvgHandler):
    """Returns the given samples first, then behaves normally."""

    def __init__(self, *samples: Any) -> None:
        super().__init__(rounds=1)
        self._samples = list(samples)

    def sample_clients(self) -> list[int]:
        if self._samples:
            return self._samples.pop(0)  # type: ignore[no-any-return]
        return super().sample_clients()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ([3, 1, 3, 1, 2], r"duplicate client ids \[1, 3\]"),
        ([], r"^sample_clients\(\) returned no clients$"),
        ([1, -2], r"returned -2; client ids must be ints >= 0"),
        ([1, "2"], r"returned '2'; client ids must be ints >= 0"),
        (None, r"must return a list of client ids, got None"),
    ],
)
async def test_bad_samples_are_refused_and_the_next_round_works(
    sample: Any, message: str
) -> None:
    """A bad sample fails its run_round with ConfigurationError; the sim goes on."""
    handler = _ScriptedSampler(sample)
    sim = Simulation(handler, ScriptedWork(), executor=InlineExecutor())
    async with sim:
        with pytest.raises(ConfigurationError, match=message):
            await sim.run_round()
        assert sim.round == 0
        result = await sim.run_round()
    assert result.round == 0
    assert handler.round == 1


@pytest.mark.anyio
async def test_drop_with_fewer_sampled_than_min_clients_is_refused() -> None:
    """A round that could never reach min_clients is refused before it runs."""
    handler = _ScriptedSampler([1, 2])
    sim = Simulation(
        handler,
        ScriptedWork(),
        executor=InlineExecutor(),
        on_client_failure="drop",
        min_clients=3,
    )
    async with sim:
        with pytest.raises(
            ConfigurationError,
            match=r"returned 2 clients but min_clients=3: the round could never",
        ):
            await sim.run_round()
        assert sim.round == 0
        assert handler.load_calls == 0


@pytest.mark.anyio
async def test_run_round_after_the_handler_stopped_is_refused() -> None:
    """Once is_stopped() is true, run_round raises SimulationFinishedError."""
    sim = _sim(executor=ThreadExecutor(2))
    async with sim:
        assert len(await sim.run()) == 1
        with pytest.raises(
            SimulationFinishedError,
            match=r"^the handler reports training is over after 1 rounds",
        ):
            await sim.run_round()
        assert await sim.run() == []


@pytest.mark.anyio
@pytest.mark.parametrize("rounds", [-1, 1.5, "2", True])
async def test_bad_round_counts_are_refused(rounds: object) -> None:
    """run(rounds=...) takes an integer >= 0: -1, 1.5 (ran two rounds), "2"."""
    sim = _sim()
    async with sim:
        with pytest.raises(
            ConfigurationError,
            match=rf"^rounds must be an integer >= 0 or None, got {rounds!r}$",
        ):
            await sim.run(rounds=rounds)  # type: ignore[arg-type]
        assert sim.round == 0


@pytest.mark.anyio
async def test_unpicklable_work_on_processes_is_refused_at_start() -> None:
    """A lambda cannot go to process workers: ConfigurationError says why."""
    executor = ProcessExecutor(1)
    sim = Simulation(FedAvgHandler(), lambda ctx, payload: payload, executor=executor)
    with pytest.raises(ConfigurationError, match=r"cannot be pickled") as info:
        async with sim:
            pass
    assert "ThreadExecutor" in str(info.value)
    assert isinstance(info.value, BlazeFLError)
    assert executor.pids == []
    assert not executor.running
