"""Bad hyper-parameters, bad arguments and bad updates are rejected early,
naming what is wrong; the server's checkpoint continues a run identically."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from alg_fakes import dataset, make_ctx

from blazefl import ConfigurationError
from blazefl.algorithms import (
    ALGORITHMS,
    Algorithm,
    ClientUpdate,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FederatedClient,
    FederatedServer,
    FedProx,
    FedYogi,
    Scaffold,
)
from blazefl.data import SyntheticPartitionedDataset, TensorPartitionedDataset
from blazefl.models import ModelZoo


@pytest.fixture(scope="module")
def data() -> SyntheticPartitionedDataset:
    return dataset()


def _server(
    data: SyntheticPartitionedDataset, algorithm: Algorithm | None = None, **kw: Any
) -> FederatedServer:
    args: dict[str, Any] = {
        "dataset": data,
        "num_clients": 10,
        "rounds": 4,
        "sample_ratio": 0.3,
        "seed": 3,
    }
    args.update(kw)
    return FederatedServer(algorithm or FedAvg(), ModelZoo(), "mlp", **args)


# -- algorithm hyper-parameters --------------------------------------------------

FEDOPT = [FedAdam, FedYogi, FedAdagrad]

BAD_HYPERPARAMETERS: list[tuple[type, dict[str, Any], str]] = [
    (FedAvgM, {"server_lr": 0.0}, r"server_lr must be a finite number > 0, got 0\.0"),
    (FedAvgM, {"server_lr": math.inf}, r"server_lr must be .* got inf"),
    (FedAvgM, {"server_lr": "1"}, r"server_lr must be .* got '1'"),
    (FedAvgM, {"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1\.0"),
    (FedAvgM, {"momentum": -0.1}, r"momentum must be in \[0, 1\), got -0\.1"),
    (FedAvgM, {"momentum": True}, r"momentum must be in \[0, 1\), got True"),
    (FedProx, {"mu": -0.5}, r"mu must be a finite number >= 0, got -0\.5"),
    (FedProx, {"mu": math.nan}, r"mu must be a finite number >= 0, got nan"),
    (FedProx, {"mu": None}, r"mu must be a finite number >= 0, got None"),
    (Scaffold, {"num_clients": 0}, r"num_clients must be an integer >= 1, got 0"),
    (Scaffold, {"num_clients": 2.0}, r"num_clients must be an integer >= 1, got 2\.0"),
    (Scaffold, {"num_clients": True}, r"num_clients must be an integer >= 1, got True"),
    (Scaffold, {"server_lr": -1.0}, r"server_lr must be a finite number > 0"),
    *[
        (cls, {"server_lr": 0}, r"server_lr must be a finite number > 0")
        for cls in FEDOPT
    ],
    *[(cls, {"beta1": 1.0}, r"beta1 must be in \[0, 1\), got 1\.0") for cls in FEDOPT],
    *[
        (cls, {"beta2": -0.01}, r"beta2 must be in \[0, 1\), got -0\.01")
        for cls in FEDOPT
    ],
    *[
        (cls, {"tau": 0.0}, r"tau must be a finite number > 0, got 0\.0")
        for cls in FEDOPT
    ],
    *[
        (cls, {"tau": math.nan}, r"tau must be a finite number > 0, got nan")
        for cls in FEDOPT
    ],
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    BAD_HYPERPARAMETERS,
    ids=[
        f"{c.name}-{next(iter(k))}-{i}"
        for i, (c, k, _) in enumerate(BAD_HYPERPARAMETERS)
    ],
)
def test_bad_hyperparameter_rejected(
    cls: type[Algorithm], kwargs: dict[str, Any], match: str
) -> None:
    """A bad algorithm hyper-parameter fails at construction, naming it."""
    with pytest.raises(ConfigurationError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algorithm_defaults_construct(name: str) -> None:
    """Every built-in constructs with its defaults and is registered by name."""
    cls = ALGORITHMS[name]
    assert cls.name == name
    assert isinstance(cls(), Algorithm)


def test_algorithms_registry_is_complete() -> None:
    """ALGORITHMS lists the fifteen built-ins by name."""
    assert set(ALGORITHMS) == {
        "fedavg",
        "fedavgm",
        "fedprox",
        "scaffold",
        "fedadam",
        "fedyogi",
        "fedadagrad",
        "fedbuff",
        "fedasync",
        "ditto",
        "fedper",
        "fedrep",
        "fedbn",
        "apfl",
        "finetune",
    }


def test_algorithms_are_frozen() -> None:
    """Algorithm hyper-parameters cannot be changed after validation."""
    alg = FedProx(mu=0.1)
    with pytest.raises(AttributeError):
        alg.mu = -1.0  # type: ignore[misc]


# -- FederatedServer / FederatedClient arguments -------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_clients": 0}, r"num_clients must be an integer >= 1, got 0"),
        ({"num_clients": 10.0}, r"num_clients must be an integer >= 1, got 10\.0"),
        ({"rounds": 0}, r"rounds must be an integer >= 1, got 0"),
        ({"sample_ratio": 0.0}, r"sample_ratio must be in \(0, 1\], got 0\.0"),
        (
            {"sample_ratio": 1.5},
            r"sample_ratio must be in \(0, 1\], got 1\.5: it would sample 15 "
            r"clients a round but there are only num_clients=10$",
        ),
        (
            {"num_clients": 11},
            r"num_clients=11 but the data set has only 10 client partitions",
        ),
        ({"sample_ratio": True}, r"sample_ratio must be in \(0, 1\], got True"),
        ({"sample_ratio": 0.05}, r"sample_ratio=0\.05 of num_clients=10 samples no"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63\), got -1"),
        ({"seed": 2**63}, r"seed must be an integer in \[0, 2\*\*63\), got 9223"),
        ({"eval_batch_size": 0}, r"eval_batch_size must be an integer >= 1, got 0"),
    ],
)
def test_server_bad_arguments_rejected(
    data: SyntheticPartitionedDataset, kwargs: dict[str, Any], match: str
) -> None:
    """A bad FederatedServer argument fails at construction, naming it."""
    with pytest.raises(ConfigurationError, match=match):
        _server(data, **kwargs)


def test_server_rejects_non_algorithm(data: SyntheticPartitionedDataset) -> None:
    """FederatedServer needs an Algorithm instance, not a name or a class."""
    with pytest.raises(ConfigurationError, match=r"algorithm must be a blazefl"):
        FederatedServer(
            "fedavg",  # type: ignore[arg-type]
            ModelZoo(),
            "mlp",
            dataset=data,
            num_clients=10,
            rounds=1,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algorithm": FedAvg}, r"algorithm must be a blazefl\.algorithms\.Algorithm"),
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"epochs": 1.5}, r"epochs must be an integer >= 1, got 1\.5"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0\.0"),
        ({"lr": math.inf}, r"lr must be a finite number > 0, got inf"),
        ({"lr": True}, r"lr must be a finite number > 0, got True"),
    ],
)
def test_client_bad_arguments_rejected(
    data: SyntheticPartitionedDataset, kwargs: dict[str, Any], match: str
) -> None:
    """A bad FederatedClient argument fails at construction, naming it."""
    args: dict[str, Any] = {"algorithm": FedAvg(), "epochs": 1, "batch_size": 8}
    args.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        FederatedClient(
            model_selector=ModelZoo(), model_name="mlp", dataset=data, **args
        )


def test_server_samples_int_of_ratio_sorted(data: SyntheticPartitionedDataset) -> None:
    """The server samples int(N·ratio) distinct clients a round, sorted."""
    server = _server(data, sample_ratio=0.3)
    cids = server.sample_clients()
    assert len(cids) == 3
    assert cids == sorted(set(cids))
    assert all(0 <= c < 10 for c in cids)


# -- bad updates ----------------------------------------------------------------------


def _good(server: FederatedServer, cid: int) -> ClientUpdate:
    return ClientUpdate(cid, torch.full_like(server.params, float(cid)), 64)


MALFORMED: list[tuple[Callable[[torch.Tensor], Any], str]] = [
    (lambda p: torch.zeros(5), r"client 7 sent parameters of shape \(5,\) and dtype"),
    (lambda p: p.double(), r"client 7 sent .* dtype torch\.float64; the global"),
    (lambda p: p.tolist(), r"client 7 sent list parameters, expected a tensor"),
]


@pytest.mark.parametrize(
    ("make", "match"), MALFORMED, ids=["shape", "dtype", "not-a-tensor"]
)
def test_server_rejects_malformed_update(
    data: SyntheticPartitionedDataset,
    make: Callable[[torch.Tensor], Any],
    match: str,
) -> None:
    """An update of the wrong shape, dtype or type is rejected, naming the client."""
    server = _server(data)  # 3 clients a round
    server.load(_good(server, 1))
    server.load(_good(server, 2))
    with pytest.raises(ConfigurationError, match=match):
        server.load(ClientUpdate(7, make(server.params), 64))
    assert server.round == 0


def test_check_uplink_accepts_a_well_formed_update(
    data: SyntheticPartitionedDataset,
) -> None:
    """check_uplink passes an update of the global model's shape and dtype."""
    server = _server(data)
    server.check_uplink(_good(server, 4))


def test_check_uplink_refuses_another_type(data: SyntheticPartitionedDataset) -> None:
    """An uplink that is not a ClientUpdate is refused, naming what it is."""
    with pytest.raises(
        ConfigurationError, match=r"^a client sent a Tensor; expected a blazefl"
    ):
        _server(data).check_uplink(torch.zeros(3))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({}, r"client 2 sent no extra\['delta_c'\]; scaffold needs it, a tensor of "),
        (
            {"delta_c": torch.zeros(4)},
            r"client 2 sent extra\['delta_c'\] of shape \(4,\) and dtype "
            r"torch\.float32; the global model has shape \(\d+,\)",
        ),
        (
            {"delta_c": "0"},
            r"client 2 sent str extra\['delta_c'\], expected a tensor of shape",
        ),
    ],
    ids=["missing", "shape", "type"],
)
def test_check_uplink_checks_scaffold_control_variates(
    data: SyntheticPartitionedDataset, extra: dict[str, Any], match: str
) -> None:
    """SCAFFOLD's delta_c must be there, shaped and typed like the model."""
    server = _server(data, Scaffold(num_clients=10))
    good = {"delta_c": torch.zeros_like(server.params)}
    server.check_uplink(ClientUpdate(2, server.params.clone(), 8, extra=good))
    with pytest.raises(ConfigurationError, match=match):
        server.check_uplink(ClientUpdate(2, server.params.clone(), 8, extra=extra))


def test_check_uplink_reads_no_data(data: SyntheticPartitionedDataset) -> None:
    """Only metadata is read: a meta tensor (no storage) of the right shape passes."""
    server = _server(data)
    meta = torch.empty(server.params.shape, dtype=server.params.dtype, device="meta")
    server.check_uplink(ClientUpdate(3, meta, 8))


@pytest.mark.parametrize("count", [0, -1, 2.0, True])
def test_check_uplink_refuses_a_sample_count_below_one(
    data: SyntheticPartitionedDataset, count: Any
) -> None:
    """An update must come from at least one sample (weight 0 is refused)."""
    server = _server(data)
    with pytest.raises(
        ConfigurationError, match=rf"client 5 reported num_samples={count!r}; an "
    ):
        server.check_uplink(ClientUpdate(5, server.params.clone(), count))


def test_client_with_no_training_data_raises_naming_it() -> None:
    """A sampled client with an empty partition refuses to train, naming its cid."""
    x, y = torch.zeros(4, 1, 12, 12), torch.tensor([0, 1, 0, 1])
    data = TensorPartitionedDataset(
        x, y, [[0, 1, 2, 3], []], x[:1], y[:1], allow_empty_clients=True
    )
    server = FederatedServer(
        FedAvg(), ModelZoo(), "mlp", dataset=data, num_clients=2, rounds=1
    )
    client = FederatedClient(FedAvg(), ModelZoo(), "mlp", data, batch_size=2)
    with pytest.raises(
        ConfigurationError,
        match=r"^client 1 has no training samples \(its 'train' partition is empty\)",
    ):
        client(make_ctx(1), server.downlink_package())
    assert client(make_ctx(0), server.downlink_package()).num_samples == 4


def test_server_rejects_negative_sample_count(
    data: SyntheticPartitionedDataset,
) -> None:
    """An update reporting a negative sample count is rejected, naming the client."""
    server = _server(data)
    bad = ClientUpdate(5, server.params.clone(), -1)
    with pytest.raises(ConfigurationError, match=r"client 5 reported num_samples=-1"):
        server.load_round([bad])


def test_server_rejects_empty_round(data: SyntheticPartitionedDataset) -> None:
    """Aggregating a round with no update is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"at least one client update"):
        _server(data).load_round([])


def test_server_recovers_after_rejected_update(
    data: SyntheticPartitionedDataset,
) -> None:
    """After a rejected update, the next full round aggregates only its own."""
    server = _server(data)  # 3 clients a round
    server.load(_good(server, 1))
    server.load(_good(server, 2))
    with pytest.raises(ConfigurationError, match=r"client 9 sent parameters"):
        server.load(ClientUpdate(9, torch.zeros(5), 64))
    # The coordinator applies nothing of a failed round; a fresh round follows.
    for cid in (3, 4, 5):
        server.load(_good(server, cid))
    assert server.round == 1
    assert torch.equal(server.params, torch.full_like(server.params, 4.0))


# -- checkpoints -------------------------------------------------------------


def _feed_round(server: FederatedServer, round_index: int) -> list[int]:
    """One round of hand-made updates for the server's sampled clients."""
    cids = server.sample_clients()
    n = server.params.numel()
    for cid in cids:
        g = torch.Generator().manual_seed(1000 * round_index + cid)
        params = server.params + 0.1 * torch.randn(n, generator=g)
        delta_c = 0.01 * torch.randn(n, generator=g)
        server.load(ClientUpdate(cid, params, 32 + cid, extra={"delta_c": delta_c}))
    return cids


@pytest.mark.parametrize(
    "algorithm",
    [FedAvgM(momentum=0.9), FedAdam(server_lr=0.05), Scaffold(num_clients=10)],
    ids=lambda a: a.name,
)
def test_state_dict_round_trip_continues_identically(
    data: SyntheticPartitionedDataset, algorithm: Algorithm
) -> None:
    """Save after 2 rounds, restore into a fresh server: the next 2 rounds match."""
    original = _server(data, algorithm)
    for r in range(2):
        _feed_round(original, r)
    saved = original.state_dict()
    assert saved["round"] == 2
    continued = [_feed_round(original, r) for r in (2, 3)]

    restored = _server(data, algorithm)
    restored.load_state_dict(saved)
    assert restored.round == 2
    resumed = [_feed_round(restored, r) for r in (2, 3)]

    assert resumed == continued
    assert restored.round == original.round == 4
    assert restored.is_stopped()
    assert torch.equal(restored.params, original.params)
    assert restored.state.keys() == original.state.keys()
    for key in original.state:
        assert torch.equal(restored.state[key], original.state[key]), key
    assert restored.get_summary() == original.get_summary()


def test_state_dict_is_a_snapshot(data: SyntheticPartitionedDataset) -> None:
    """A saved state does not change as the server keeps running."""
    server = _server(data, FedAvgM())
    _feed_round(server, 0)
    saved = server.state_dict()
    params, velocity = saved["params"].clone(), saved["algorithm_state"]["velocity"]
    velocity = velocity.clone()
    _feed_round(server, 1)
    assert torch.equal(saved["params"], params)
    assert torch.equal(saved["algorithm_state"]["velocity"], velocity)
    assert saved["round"] == 1


def test_load_state_dict_rejects_other_algorithm(
    data: SyntheticPartitionedDataset,
) -> None:
    """A checkpoint of another algorithm is refused, naming both."""
    saved = _server(data, FedAdam()).state_dict()
    with pytest.raises(
        ConfigurationError, match=r"'fedadam', this server runs 'fedyogi'"
    ):
        _server(data, FedYogi()).load_state_dict(saved)


def test_load_state_dict_rejects_another_federation(
    data: SyntheticPartitionedDataset,
) -> None:
    """A state from a federation of another size is refused, naming both sizes."""
    saved = _server(data, num_clients=8).state_dict()
    with pytest.raises(
        ConfigurationError,
        match=r"^state is for a federation with num_clients=8; this server has "
        r"num_clients=10",
    ):
        _server(data).load_state_dict(saved)


def test_load_state_dict_accepts_a_state_without_federation_size(
    data: SyntheticPartitionedDataset,
) -> None:
    """States written before the federation size was recorded still load."""
    saved = _server(data).state_dict()
    del saved["num_clients"], saved["clients_per_round"]
    _server(data).load_state_dict(saved)


def test_load_state_dict_rejects_other_model(data: SyntheticPartitionedDataset) -> None:
    """A checkpoint of a differently shaped model is refused, giving both shapes."""
    saved = _server(data).state_dict()
    saved["params"] = torch.zeros(3)
    with pytest.raises(ConfigurationError, match=r"shape \(3,\) and dtype"):
        _server(data).load_state_dict(saved)
