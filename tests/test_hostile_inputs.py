"""The catalogue of hostile and mistaken input: each case is refused early, by a
named exception whose message names the bad value and what was expected.

One list, `CASES`, is the proof of issue 8's list; docs/reliability.md
("Hostile and mistaken input") tabulates the same cases by id, and a test
keeps the two in step. Real objects throughout: the command line through
click's runner, `Simulation` on inline and thread executors, checkpoint files
on disk. A malformed or diverged client update is not an exception of the
run: it is that client's failed slot, and the round's failure policy decides
(`test_rejected_update_is_a_failed_slot`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing
import torch
from click.testing import CliRunner

from blazefl import ConfigurationError, IntegrityError, InUseError, RoundFailedError
from blazefl.algorithms import (
    Algorithm,
    ClientUpdate,
    FedAvg,
    FederatedClient,
    FederatedServer,
    Scaffold,
)
from blazefl.algorithms._fedavg import BlazeFLFedAvg
from blazefl.cli._app import cli
from blazefl.cli._files import claim_folder
from blazefl.contrib import (
    FedAvgBaseClientTrainer,
    FedAvgBaseServerHandler,
    FedAvgUplinkPackage,
)
from blazefl.contrib.fedavg import FedAvgClientWork
from blazefl.data import (
    SyntheticPartitionedDataset,
    TensorPartitionedDataset,
    dirichlet_partition,
    iid_partition,
)
from blazefl.models import ModelZoo
from blazefl.privacy import Privacy
from blazefl.robust import Krum, Median, draw_attackers
from blazefl.sim import (
    ClientFailed,
    InlineExecutor,
    RoundFinished,
    Simulation,
    ThreadExecutor,
    load_checkpoint,
    save_checkpoint,
)

CLIENTS = 4
BAD = 1  # the client whose update is malformed in the failed-slot cases


class CommandUsageError(Exception):
    """`blazefl` exited with status 2 (a usage error); carries its stderr."""


@functools.cache
def _data() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(
        CLIENTS, seed=0, samples_per_client=16, test_samples=20
    )


def _server(algorithm: Algorithm | None = None, **kwargs: Any) -> FederatedServer:
    args: dict[str, Any] = {
        "dataset": _data(),
        "num_clients": CLIENTS,
        "rounds": 2,
        "sample_ratio": 1.0,
        "seed": 0,
    }
    args.update(kwargs)
    model = args.pop("model", "mlp")
    return FederatedServer(algorithm or FedAvg(), ModelZoo(), model, **args)


def _client(algorithm: Algorithm | None = None, **kwargs: Any) -> FederatedClient:
    args: dict[str, Any] = {"dataset": _data(), "epochs": 1, "batch_size": 8}
    args.update(kwargs)
    return FederatedClient(algorithm or FedAvg(), ModelZoo(), "mlp", **args)


def _fedavg_handler(**kwargs: Any) -> FedAvgBaseServerHandler:
    args: dict[str, Any] = {
        "model_selector": ModelZoo(),
        "model_name": "mlp",
        "dataset": _data(),
        "global_round": 2,
        "num_clients": CLIENTS,
        "sample_ratio": 1.0,
        "device": "cpu",
        "batch_size": 32,
        "seed": 0,
    }
    args.update(kwargs)
    return FedAvgBaseServerHandler(**args)


# -- the command line ----------------------------------------------------------


def _cli(*args: str | Path) -> Callable[[Path], None]:
    """`blazefl run ARGS` as a user runs it: usage errors exit with status 2,
    with one ``Error:`` line and no traceback."""

    def trigger(tmp_path: Path) -> None:
        argv = [str(a).replace("{tmp}", str(tmp_path)) for a in args]
        result = CliRunner().invoke(cli, ["run", *argv], prog_name="blazefl")
        # An exception other than the exit itself would be a traceback.
        assert isinstance(result.exception, SystemExit), result.exc_info
        assert "Traceback" not in result.output
        if result.exit_code == 2:
            (message,) = [
                line for line in result.stderr.splitlines() if line.startswith("Error")
            ]
            after = result.stderr.split(message, 1)[1]
            assert not after.strip(), f"more than one line: {result.stderr}"
            raise CommandUsageError(message)
        raise AssertionError(f"exit {result.exit_code}: {result.output}")

    return trigger


def _config_file(text: str | bytes, *args: str) -> Callable[[Path], None]:
    """`blazefl run --config FILE ARGS` with FILE holding ``text``."""

    def trigger(tmp_path: Path) -> None:
        path = tmp_path / "fl.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        _cli("--config", path, *args)(tmp_path)

    return trigger


TINY_RUN = ["--clients", "4", "--rounds", "1", "--epochs", "1", "--executor", "inline"]


def _finished_run(tmp_path: Path) -> Path:
    """The run folder of a finished one-round run."""
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["run", *TINY_RUN, "-q", "--out", str(out)], prog_name="blazefl"
    )
    assert result.exit_code == 0, result.output
    return out


def _resume_edited_run(tmp_path: Path) -> None:
    """A finished run whose config.toml was edited, then resumed."""
    out = _finished_run(tmp_path)
    config = out / "config.toml"
    config.write_text(config.read_text().replace("lr = 0.1", "lr = 0.3"))
    _cli("--resume", out)(tmp_path)


def _resume_edited_metrics(
    line: bytes, log: str = "metrics.jsonl"
) -> Callable[[Path], None]:
    """A finished run with ``line`` (and a newline) added to ``log``."""

    def trigger(tmp_path: Path) -> None:
        out = _finished_run(tmp_path)
        with (out / log).open("ab") as f:
            f.write(line + b"\n")
        _cli("--resume", out)(tmp_path)

    return trigger


def _resume_non_torch_checkpoint(tmp_path: Path) -> None:
    """A finished run whose checkpoint has a valid header and digest over a
    body that is not a torch archive."""
    out = _finished_run(tmp_path)
    _write_raw_checkpoint(out / "checkpoint.ckpt", b"not a torch archive")
    _cli("--resume", out)(tmp_path)


def _out_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    _cli(*TINY_RUN, "--out", tmp_path / "afile" / "sub")(tmp_path)


# -- checkpoints ------------------------------------------------------------


def _checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    save_checkpoint(path, {"round": 3, "params": torch.arange(5.0)})
    return path


def _truncated(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    load_checkpoint(path)


def _tampered(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    load_checkpoint(path)


def _newer_format(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    magic, header, body = path.read_bytes().split(b"\n", 2)
    fields = json.loads(header)
    fields["format"] = 2
    path.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + body)
    load_checkpoint(path)


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def _write_raw_checkpoint(path: Path, body: bytes) -> Path:
    """A checkpoint file of ``body`` with a valid header: size and digest."""
    header = {
        "format": 1,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    path.write_bytes(
        b"BLAZEFL-CHECKPOINT\n" + json.dumps(header).encode() + b"\n" + body
    )
    return path


def _code_running_pickle(tmp_path: Path) -> None:
    """A torch.save archive whose pickle calls os.system when loaded unsafely."""
    buffer = io.BytesIO()
    torch.save({"round": _Exploit()}, buffer)
    load_checkpoint(_write_raw_checkpoint(tmp_path / "evil", buffer.getvalue()))


def _legacy_pickle(tmp_path: Path) -> None:
    """A bare pickle (no torch archive) of the same exploit."""
    buffer = io.BytesIO()
    pickle.dump({"round": _Exploit()}, buffer, protocol=2)
    load_checkpoint(_write_raw_checkpoint(tmp_path / "evil", buffer.getvalue()))


def _non_torch_body(body: bytes) -> Callable[[Path], None]:
    def trigger(tmp_path: Path) -> None:
        load_checkpoint(_write_raw_checkpoint(tmp_path / "ckpt", body))

    return trigger


def _foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"x": 1}, path)
    load_checkpoint(path)


def _other_seed(tmp_path: Path) -> None:
    sim = Simulation(_server(), _client(), executor=InlineExecutor(), seed=5)
    sim.run_sync(rounds=1)
    path = tmp_path / "ckpt"
    save_checkpoint(path, sim.state_dict())
    other = Simulation(_server(), _client(), executor=InlineExecutor(), seed=6)
    other.load_state_dict(load_checkpoint(path))


def _other_federation(tmp_path: Path) -> None:
    state = _server(sample_ratio=0.5).state_dict()
    _server().load_state_dict(state)


def _other_algorithm(tmp_path: Path) -> None:
    _server(Scaffold(num_clients=CLIENTS)).load_state_dict(_server().state_dict())


def _appended(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    with path.open("ab") as f:
        f.write(b"0123456789")
    load_checkpoint(path)


# -- run folders -----------------------------------------------------------------

ONE_ROUND = ["--clients", "4", "--rounds", "1", "--epochs", "1", "-q"]


def _finished_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["run", *ONE_ROUND, "--executor", "inline", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def _out_with_users_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.png").write_bytes(b"the user's own plot")
    _cli(*ONE_ROUND, "--out", "{tmp}")(tmp_path)


def _resume_in_use(tmp_path: Path) -> None:
    out = _finished_run(tmp_path)
    with claim_folder(out):
        _cli("--resume", out)(tmp_path)


def _resume_with_checkpoint(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """--resume of a run whose checkpoint.ckpt was replaced by ``make(path)``."""

    def trigger(tmp_path: Path) -> None:
        out = _finished_run(tmp_path)
        (out / "checkpoint.ckpt").unlink()
        make(out / "checkpoint.ckpt")
        _cli("--resume", out)(tmp_path)

    return trigger


# -- client states on disk -----------------------------------------------------


def _disk_sim(path: Path) -> Simulation[Any, Any]:
    return Simulation(
        _server(), _client(), executor=InlineExecutor(), seed=0, client_state_path=path
    )


def _state_file_in_use(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    holder = _disk_sim(path)

    async def main() -> None:
        async with holder:
            _disk_sim(path)

    anyio.run(main)


def _flipped_rng_digit(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    sim = _disk_sim(path)
    sim.run_sync(rounds=1)
    with closing(sqlite3.connect(path)) as db, db:
        rng = db.execute("SELECT rng FROM states WHERE cid = 2").fetchone()[0]
        state = json.loads(rng)
        state["python"][1][0] ^= 1
        db.execute("UPDATE states SET rng = ? WHERE cid = 2", (json.dumps(state),))
    sim.client_state(2)


def _deleted_state(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    sim = _disk_sim(path)
    sim.run_sync(rounds=1)
    state = sim.state_dict()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM states WHERE cid = 2")
    _disk_sim(path).load_state_dict(state)


# -- the coordinator ----------------------------------------------------------


@dataclass
class _FixedSampler:
    """A handler whose custom sample_clients returns ``cids``."""

    cids: list[Any]

    def sample_clients(self) -> list[Any]:
        return self.cids

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(2)

    def load(self, package: Any) -> bool:
        return False

    def is_stopped(self) -> bool:
        return False


def _sample(cids: list[Any], *, on_disk: bool = False) -> Callable[[Path], None]:
    def trigger(tmp_path: Path) -> None:
        work = lambda ctx, payload: payload  # noqa: E731
        store = {"client_state_path": tmp_path / "states.sqlite"} if on_disk else {}
        Simulation(
            _FixedSampler(cids), work, executor=InlineExecutor(), **store
        ).run_sync(rounds=1)

    return trigger


# -- failed slots: one client's update is malformed --------------------------


@dataclass(frozen=True)
class _Corrupting:
    """Client work that runs ``work`` and then spoils client BAD's update."""

    work: Any
    spoil: Callable[[Any], Any]

    def __call__(self, ctx: Any, payload: Any) -> Any:
        result = self.work(ctx, payload)
        return self.spoil(result) if ctx.cid == BAD else result


@dataclass(frozen=True)
class _WritingPayload:
    """Client work whose client BAD first writes into the broadcast it got."""

    work: Any

    def __call__(self, ctx: Any, payload: Any) -> Any:
        if ctx.cid == BAD:
            payload.params.add_(1.0)  # FederatedServer's own params, if shared
        return self.work(ctx, payload)


@dataclass(frozen=True)
class BadClient:
    """A federation of four clients, all sampled, in which client BAD's update
    is refused. As a catalogue trigger it runs one round under ``fail_round``."""

    build: Callable[[str], tuple[Any, Simulation[Any, Any]]]

    def __call__(self, tmp_path: Path) -> None:
        _, sim = self.build("fail_round")
        sim.run_sync(rounds=1)


def _policy_args(policy: str) -> dict[str, Any]:
    executor = InlineExecutor() if policy == "fail_round" else ThreadExecutor(2)
    return {"executor": executor, "on_client_failure": policy, "seed": 0}


def _spoiled(
    spoil: Callable[[ClientUpdate], Any], algorithm: Algorithm | None = None
) -> BadClient:
    def build(policy: str) -> tuple[Any, Simulation[Any, Any]]:
        server = _server(algorithm)
        work = _Corrupting(_client(algorithm), spoil)
        return server, Simulation(server, work, **_policy_args(policy))

    return BadClient(build)


def _spoiled_fedavg(spoil: Callable[[FedAvgUplinkPackage], Any]) -> BadClient:
    def build(policy: str) -> tuple[Any, Simulation[Any, Any]]:
        handler = _fedavg_handler()
        work = FedAvgClientWork(ModelZoo(), "mlp", _data(), 1, 8, 0.1)
        return handler, Simulation(
            handler, _Corrupting(work, spoil), **_policy_args(policy)
        )

    return BadClient(build)


def _payload_writer() -> BadClient:
    def build(policy: str) -> tuple[Any, Simulation[Any, Any]]:
        server = _server()
        work = _WritingPayload(_client())
        return server, Simulation(server, work, **_policy_args(policy))

    return BadClient(build)


def _empty_client() -> BadClient:
    """Client BAD holds no training rows (allowed at construction on request)."""

    def build(policy: str) -> tuple[Any, Simulation[Any, Any]]:
        full = _data().get_dataset("train", None)
        rows = [full.indices[cid * 16 : (cid + 1) * 16] for cid in range(CLIENTS)]  # type: ignore[attr-defined]
        rows[BAD] = rows[BAD][:0]
        test = _data().get_dataset("test", None)
        data = TensorPartitionedDataset(
            full.data,  # type: ignore[attr-defined]
            full.targets,  # type: ignore[attr-defined]
            rows,
            test.data,  # type: ignore[attr-defined]
            test.targets,  # type: ignore[attr-defined]
            allow_empty_clients=True,
        )
        server = _server(dataset=data)
        work = _client(dataset=data)
        return server, Simulation(server, work, **_policy_args(policy))

    return BadClient(build)


def _params(update: ClientUpdate, params: torch.Tensor) -> ClientUpdate:
    return replace(update, params=params)


def _extra(update: ClientUpdate, **extra: torch.Tensor) -> ClientUpdate:
    return replace(update, extra=extra)


# -- data ---------------------------------------------------------------------


def _empty_partition(tmp_path: Path) -> None:
    """Dirichlet with min_size=0 and tiny alpha leaves clients empty."""
    y = torch.arange(200) % 10
    parts = dirichlet_partition(y, 40, alpha=0.01, seed=0, min_size=0)
    TensorPartitionedDataset(torch.zeros(200, 3), y, parts, torch.zeros(1, 3), y[:1])


# -- the catalogue -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile or mistaken input, the error it gets, and the message's
    regex: the bad value and what was expected."""

    id: str
    trigger: Callable[[Path], object]
    error: type[BaseException]
    match: str


SHAPE = r"\(9930,\) and dtype torch\.float32"  # the mlp's flat vector

CASES: list[Case] = [
    # -- non-positive counts ---------------------------------------------------
    Case(
        "cli-rounds-zero",
        _cli("--rounds", "0"),
        CommandUsageError,
        r"Invalid value for '--rounds': must be an integer >= 1, got 0",
    ),
    Case(
        "cli-clients-negative",
        _cli("--clients", "-3"),
        CommandUsageError,
        r"Invalid value for '--clients': must be an integer >= 1, got -3",
    ),
    Case(
        "cli-epochs-zero",
        _cli("--epochs", "0"),
        CommandUsageError,
        r"Invalid value for '--epochs': must be an integer >= 1, got 0",
    ),
    Case(
        "cli-batch-size-zero",
        _cli("--batch-size", "0"),
        CommandUsageError,
        r"Invalid value for '--batch-size': must be an integer >= 1, got 0",
    ),
    Case(
        "server-rounds-zero",
        lambda _: _server(rounds=0),
        ConfigurationError,
        r"^rounds must be an integer >= 1, got 0$",
    ),
    Case(
        "server-clients-zero",
        lambda _: _server(num_clients=0),
        ConfigurationError,
        r"^num_clients must be an integer >= 1, got 0$",
    ),
    Case(
        "client-epochs-negative",
        lambda _: _client(epochs=-1),
        ConfigurationError,
        r"^epochs must be an integer >= 1, got -1$",
    ),
    Case(
        "client-batch-size-zero",
        lambda _: _client(batch_size=0),
        ConfigurationError,
        r"^batch_size must be an integer >= 1, got 0$",
    ),
    Case(
        "fedavg-handler-rounds-zero",
        lambda _: _fedavg_handler(global_round=0),
        ConfigurationError,
        r"^global_round must be positive, got 0$",
    ),
    # -- sample ratio and more sampled than available ---------------------------
    Case(
        "cli-sample-ratio-zero",
        _cli("--sample-ratio", "0"),
        CommandUsageError,
        r"Invalid value for '--sample-ratio': must be a finite number in "
        r"\(0, 1\], got 0\.0",
    ),
    Case(
        "cli-sample-ratio-above-one",
        _cli("--sample-ratio", "1.5"),
        CommandUsageError,
        r"'--sample-ratio': must be a finite number in \(0, 1\], got 1\.5",
    ),
    Case(
        "cli-sample-ratio-samples-nobody",
        _cli("--clients", "6", "--sample-ratio", "0.1"),
        CommandUsageError,
        r"'--sample-ratio': 0\.1 of 6 clients samples no client per round; it "
        r"must be in \(0, 1\]",
    ),
    Case(
        "server-sample-ratio-above-one",
        lambda _: _server(sample_ratio=1.5),
        ConfigurationError,
        r"^sample_ratio must be in \(0, 1\], got 1\.5: it would sample 6 clients "
        r"a round but there are only num_clients=4$",
    ),
    Case(
        "server-sample-ratio-nan",
        lambda _: _server(sample_ratio=float("nan")),
        ConfigurationError,
        r"^sample_ratio must be in \(0, 1\], got nan$",
    ),
    Case(
        "fedavg-handler-sample-ratio-above-one",
        lambda _: _fedavg_handler(sample_ratio=2),
        ConfigurationError,
        r"^sample_ratio must be in the interval \(0, 1\], got 2: it would sample "
        r"8 clients a "
        r"round but there are only num_clients=4$",
    ),
    Case(
        "server-more-clients-than-data",
        lambda _: _server(num_clients=10),
        ConfigurationError,
        r"^num_clients=10 but the data set has only 4 client partitions; use "
        r"num_clients <= 4",
    ),
    Case(
        "fedavg-handler-more-clients-than-data",
        lambda _: _fedavg_handler(num_clients=10),
        ConfigurationError,
        r"^num_clients=10 but the data set has only 4 client partitions",
    ),
    Case(
        "fedavg-trainer-more-clients-than-data",
        lambda _: FedAvgBaseClientTrainer(
            ModelZoo(), "mlp", _data(), "cpu", 10, 1, 8, 0.1, 0
        ),
        ConfigurationError,
        r"^num_clients=10 but the data set has only 4 client partitions",
    ),
    Case(
        "partition-more-clients-than-samples",
        lambda _: iid_partition(5, 10, seed=0),
        ConfigurationError,
        r"^num_clients=10 is more than the 5 samples; .* use fewer clients$",
    ),
    # -- unknown names ------------------------------------------------------
    Case(
        "cli-unknown-algorithm",
        _cli("--algorithm", "fedsgd"),
        CommandUsageError,
        r"'--algorithm': 'fedsgd' is not one of 'fedavg', 'fedavgm'",
    ),
    Case(
        "cli-unknown-dataset",
        _cli("--dataset", "imagenet"),
        CommandUsageError,
        r"'--dataset': 'imagenet' is not one of 'synthetic', 'synthetic-cifar10'",
    ),
    Case(
        "cli-unknown-partition",
        _cli("--partition", "random"),
        CommandUsageError,
        r"'--partition': 'random' is not one of 'natural', 'iid', 'dirichlet'",
    ),
    Case(
        "cli-unknown-executor",
        _cli("--executor", "gpu"),
        CommandUsageError,
        r"'--executor': 'gpu' is not one of 'inline', 'threads', 'processes'",
    ),
    Case(
        "cli-ray-address-without-ray",
        _cli("--executor", "threads", "--ray-address", "10.0.0.1:6379"),
        CommandUsageError,
        r"'--ray-address' applies only to --executor ray, not --executor threads; "
        r"pass --executor ray, or leave --ray-address out",
    ),
    Case(
        "config-ray-address-without-ray",
        _config_file('ray_address = "auto"\n', "--executor", "processes"),
        CommandUsageError,
        r"'--ray-address' \(ray_address in .*fl\.toml\) applies only to "
        r"--executor ray, not --executor processes",
    ),
    Case(
        "config-unknown-algorithm-did-you-mean",
        _config_file('algorithm = "fedavgg"\n'),
        CommandUsageError,
        r"'--algorithm' \(algorithm in .*fl\.toml\): 'fedavgg' is not one of "
        r"'fedavg', .*; did you mean 'fedavg'\?",
    ),
    Case(
        "config-unknown-key-did-you-mean",
        _config_file("bach_size = 8\n"),
        CommandUsageError,
        r"fl\.toml: unknown key 'bach_size'; did you mean 'batch_size'\? \(known "
        r"keys: algorithm, ",
    ),
    Case(
        "config-bad-value",
        _config_file("rounds = -2\n"),
        CommandUsageError,
        r"'--rounds' \(rounds in .*fl\.toml\): must be an integer >= 1, got -2",
    ),
    Case(
        "config-not-utf8",
        _config_file(b"rounds = 2\n# caf\xe9\n"),
        CommandUsageError,
        r"fl\.toml is not UTF-8 text \(byte 0xe9 at offset 16\); a config file is "
        r"TOML, which is UTF-8",
    ),
    Case(
        "config-nested-too-deep",
        _config_file("rounds = " + "[" * 5000 + "]" * 5000 + "\n"),
        CommandUsageError,
        r"fl\.toml nests arrays or tables too deeply to read",
    ),
    Case(
        "config-not-a-regular-file",
        _cli("--config", os.devnull),
        CommandUsageError,
        r"/dev/null is not a regular file; a config file is a TOML file",
    ),
    Case(
        "unknown-model",
        lambda _: _server(model="vgg"),
        ConfigurationError,
        r"^unknown model name 'vgg'; expected one of \('cnn', 'mlp'",
    ),
    Case(
        "sim-unknown-executor",
        lambda _: Simulation(_server(), _client(), executor="threads"),  # type: ignore[arg-type]
        ConfigurationError,
        r"^executor must be a blazefl\.sim executor \(InlineExecutor, "
        r"ThreadExecutor, ProcessExecutor, RayExecutor\), got 'threads'$",
    ),
    Case(
        "sim-unknown-failure-policy",
        lambda _: Simulation(_server(), _client(), on_client_failure="skip"),  # type: ignore[arg-type]
        ConfigurationError,
        r"^on_client_failure must be one of \('fail_round', 'drop'\), got 'skip'$",
    ),
    # -- custom sampling -------------------------------------------------------
    Case(
        "duplicate-client-ids",
        _sample([3, 1, 3, 2, 1]),
        ConfigurationError,
        r"^sample_clients\(\) returned duplicate client ids \[1, 3\]; each sampled "
        r"client must be distinct within a round$",
    ),
    Case(
        "negative-client-id",
        _sample([0, -2]),
        ConfigurationError,
        r"^sample_clients\(\) returned -2; client ids must be ints >= 0$",
    ),
    Case(
        "client-id-beyond-2-32",
        _sample([0, 2**32]),
        ConfigurationError,
        r"^sample_clients\(\) returned 4294967296; client ids must be below 2\*\*32",
    ),
    Case(
        "client-id-2-64-disk-store",
        _sample([2**64], on_disk=True),
        ConfigurationError,
        r"^sample_clients\(\) returned 18446744073709551616; client ids must be "
        r"below 2\*\*32",
    ),
    # -- empty client data ----------------------------------------------------
    Case(
        "empty-client-partition",
        _empty_partition,
        ConfigurationError,
        r"^\d+ of 40 clients have no training samples \(client ids: \d+(, \d+)*"
        r"(, \.\.\.)?\); every client needs at least one: use fewer clients, a "
        r"larger alpha or min_size >= 1",
    ),
    Case(
        "dirichlet-alpha-too-small",
        lambda _: dirichlet_partition(torch.arange(1000) % 10, 40, alpha=0.01, seed=0),
        ConfigurationError,
        r"^dirichlet_partition gave some client fewer than min_size=10 samples "
        r"in all 101 draws .* with alpha=0\.01 and 40 clients; .* raise alpha",
    ),
    Case(
        "empty-client-trains",
        _empty_client(),
        RoundFailedError,
        rf"client {BAD}: ConfigurationError: client {BAD} has no training samples "
        r"\(its 'train' partition is empty\); every sampled client needs at "
        r"least one",
    ),
    # -- malformed uplinks (failed slots) -------------------------------------
    Case(
        "uplink-shape",
        _spoiled(lambda u: _params(u, torch.zeros(5))),
        RoundFailedError,
        rf"client {BAD}: ConfigurationError: client {BAD} sent parameters of shape "
        rf"\(5,\) and dtype torch\.float32; the global model has shape {SHAPE}",
    ),
    Case(
        "uplink-dtype",
        _spoiled(lambda u: _params(u, u.params.double())),
        RoundFailedError,
        rf"client {BAD} sent parameters of shape \(9930,\) and dtype "
        rf"torch\.float64; the global model has shape {SHAPE}",
    ),
    Case(
        "uplink-not-a-tensor",
        _spoiled(lambda u: _params(u, u.params.tolist())),  # type: ignore[arg-type]
        RoundFailedError,
        rf"client {BAD} sent list parameters, expected a tensor of shape {SHAPE}",
    ),
    Case(
        "uplink-scaffold-control-variate-shape",
        _spoiled(
            lambda u: _extra(u, delta_c=torch.zeros(3, 3)),
            Scaffold(num_clients=CLIENTS),
        ),
        RoundFailedError,
        rf"client {BAD} sent extra\['delta_c'\] of shape \(3, 3\) and dtype "
        rf"torch\.float32; the global model has shape {SHAPE}",
    ),
    Case(
        "uplink-scaffold-control-variate-missing",
        _spoiled(lambda u: _extra(u), Scaffold(num_clients=CLIENTS)),
        RoundFailedError,
        rf"client {BAD} sent no extra\['delta_c'\]; scaffold needs it, a tensor "
        rf"of shape {SHAPE}",
    ),
    Case(
        "uplink-zero-samples",
        _spoiled(lambda u: replace(u, num_samples=0)),
        RoundFailedError,
        rf"client {BAD} reported num_samples=0; an update must come from an "
        r"integer number >= 1 of training samples",
    ),
    Case(
        "uplink-fedavg-package-shape",
        _spoiled_fedavg(lambda p: replace(p, model_parameters=torch.zeros(7))),
        RoundFailedError,
        rf"client {BAD} sent model_parameters of shape \(7,\) and dtype "
        rf"torch\.float32; the global model has shape {SHAPE}",
    ),
    Case(
        "uplink-fedavg-package-dtype",
        _spoiled_fedavg(
            lambda p: replace(p, model_parameters=p.model_parameters.half())
        ),
        RoundFailedError,
        rf"client {BAD} sent model_parameters of shape \(9930,\) and dtype "
        rf"torch\.float16; the global model has shape {SHAPE}",
    ),
    Case(
        "uplink-nan",
        _spoiled(lambda u: _params(u, torch.full_like(u.params, float("nan")))),
        RoundFailedError,
        rf"client {BAD}: NonFiniteUpdateError: client {BAD} sent an update with "
        r"NaN or infinite values in tensor #0 \(shape \(9930,\)\)",
    ),
    Case(
        "uplink-inf",
        _spoiled(
            lambda u: _extra(u, delta_c=torch.full_like(u.params, -float("inf"))),
            Scaffold(num_clients=CLIENTS),
        ),
        RoundFailedError,
        rf"client {BAD}: NonFiniteUpdateError: client {BAD} sent an update with "
        r"NaN or infinite values in tensor #1 \(shape \(9930,\)\)",
    ),
    Case(
        "payload-written",
        _payload_writer(),
        RoundFailedError,
        rf"client {BAD}: PayloadModifiedError: client {BAD} wrote into the round's "
        r"payload: the tensor at payload\.params \(shape \(9930,\)\) was written "
        r"in place",
    ),
    # -- checkpoints --------------------------------------------------------------
    Case(
        "checkpoint-truncated",
        _truncated,
        ConfigurationError,
        r"ckpt is truncated: \d+ of \d+ bytes",
    ),
    Case(
        "checkpoint-tampered",
        _tampered,
        ConfigurationError,
        r"ckpt fails its SHA-256 check \(the header records [0-9a-f]{16}\.\.\., "
        r"the body hashes to [0-9a-f]{16}\.\.\.\): it was altered",
    ),
    Case(
        "checkpoint-newer-format",
        _newer_format,
        ConfigurationError,
        r"ckpt has checkpoint format 2; this blazefl reads format 1",
    ),
    Case(
        "checkpoint-code-running-pickle",
        _code_running_pickle,
        ConfigurationError,
        r"evil holds objects other than plain data and tensors; refusing to "
        r"unpickle them",
    ),
    Case(
        "checkpoint-foreign-file",
        _foreign_file,
        ConfigurationError,
        r"model\.pt is not a blazefl checkpoint",
    ),
    Case(
        "checkpoint-body-not-torch",
        _non_torch_body(b"PK\x03\x04 not a zip archive"),
        ConfigurationError,
        r"ckpt: its body \(22 bytes, digest valid\) is not a torch\.save archive "
        r"\(RuntimeError: PytorchStreamReader failed",
    ),
    Case(
        "checkpoint-body-bare-pickle",
        _legacy_pickle,
        ConfigurationError,
        r"evil: its body \(\d+ bytes, digest valid\) is not a torch\.save archive: "
        r"it starts with b'\\x80\\x02",
    ),
    Case(
        "checkpoint-body-empty",
        _non_torch_body(b""),
        ConfigurationError,
        r"ckpt: its body \(0 bytes, digest valid\) is not a torch\.save archive: "
        r"it starts with b''",
    ),
    Case(
        "checkpoint-other-seed",
        _other_seed,
        ConfigurationError,
        r"^the checkpoint's client states derive from seed 5, this run's seed is 6$",
    ),
    Case(
        "checkpoint-other-federation",
        _other_federation,
        ConfigurationError,
        r"^state is for a federation with clients_per_round=2; this server has "
        r"clients_per_round=4",
    ),
    Case(
        "checkpoint-other-algorithm",
        _other_algorithm,
        ConfigurationError,
        r"^state is for algorithm 'fedavg', this server runs 'scaffold'$",
    ),
    Case(
        "cli-resume-other-configuration",
        _resume_edited_run,
        CommandUsageError,
        r"was written by another configuration.*lr: checkpoint 0\.1, config\.toml "
        r"0\.3",
    ),
    Case(
        "cli-resume-not-a-run-folder",
        _cli("--resume", "{tmp}", "--lr", "0.2"),
        CommandUsageError,
        r"'--resume': \S+ holds no config\.toml; it is not a blazefl run folder",
    ),
    # -- privacy: differential privacy and secure aggregation (issue 16) --------
    Case(
        "cli-dp-noise-multiplier-zero",
        _cli("--dp", "central", "--noise-multiplier", "0"),
        CommandUsageError,
        r"Invalid value for '--noise-multiplier': must be a finite number > 0, "
        r"got 0\.0",
    ),
    Case(
        "cli-dp-without-noise-multiplier",
        _cli("--dp", "central"),
        CommandUsageError,
        r"--dp central needs --noise-multiplier SIGMA \(> 0\), or --target-epsilon "
        r"EPS with --calibrate",
    ),
    Case(
        "cli-noise-multiplier-without-dp",
        _cli("--noise-multiplier", "1"),
        CommandUsageError,
        r"'--noise-multiplier' needs --dp central or --dp local",
    ),
    Case(
        "cli-clip-norm-nan",
        _cli("--dp", "central", "--noise-multiplier", "1", "--clip-norm", "nan"),
        CommandUsageError,
        r"Invalid value for '--clip-norm': must be a finite number > 0, got nan",
    ),
    Case(
        "cli-target-epsilon-not-a-number",
        _cli("--dp", "central", "--noise-multiplier", "1", "--target-epsilon", "x"),
        CommandUsageError,
        r"Invalid value for '--target-epsilon': 'x' is not a valid float",
    ),
    Case(
        "config-target-epsilon-text",
        _config_file(
            'dp = "central"\nnoise_multiplier = 1.0\ntarget_epsilon = "eight"\n'
        ),
        CommandUsageError,
        r"Invalid value for '--target-epsilon' \(target_epsilon in \S+\): must be "
        r"a finite number > 0, got 'eight'",
    ),
    Case(
        "cli-delta-one",
        _cli("--dp", "central", "--noise-multiplier", "1", "--delta", "1"),
        CommandUsageError,
        r"Invalid value for '--delta': must be a number in \(0, 1\), got 1\.0",
    ),
    Case(
        "cli-pld-with-fixed-size-sampling",
        _cli("--dp", "central", "--noise-multiplier", "1", "--accountant", "pld"),
        CommandUsageError,
        r"--accountant pld cannot analyse fixed-size sampling without replacement "
        r"\(10 of 20 clients a round",
    ),
    Case(
        "cli-dp-with-scaffold",
        _cli("--algorithm", "scaffold", "--dp", "central", "--noise-multiplier", "1"),
        CommandUsageError,
        r"central DP cannot be combined with scaffold: it uploads delta_c besides "
        r"the model",
    ),
    Case(
        "cli-secagg-with-scaffold",
        _cli("--algorithm", "scaffold", "--secagg"),
        CommandUsageError,
        r"secure aggregation cannot be combined with scaffold",
    ),
    Case(
        "cli-calibrate-without-target",
        _cli("--dp", "central", "--calibrate"),
        CommandUsageError,
        r"--calibrate needs --target-epsilon",
    ),
    Case(
        "cli-adaptive-clip-with-local-dp",
        _cli("--dp", "local", "--noise-multiplier", "1", "--adaptive-clip"),
        CommandUsageError,
        r"adaptive clipping needs central DP",
    ),
    Case(
        "cli-laplace-with-central-dp",
        _cli("--dp", "central", "--noise-multiplier", "1", "--dp-mechanism", "laplace"),
        CommandUsageError,
        r"'--dp-mechanism' laplace is for --dp local",
    ),
    Case(
        "privacy-noise-multiplier-negative",
        lambda _: Privacy(dp="central", noise_multiplier=-1.0),
        ConfigurationError,
        r"^noise_multiplier must be a finite number > 0, got -1\.0$",
    ),
    Case(
        "privacy-clip-norm-nan",
        lambda _: Privacy(clip_norm=float("nan")),
        ConfigurationError,
        r"^clip_norm must be a finite number > 0, got nan$",
    ),
    Case(
        "privacy-target-epsilon-text",
        lambda _: Privacy(
            dp="central",
            noise_multiplier=1.0,
            target_epsilon="8",  # type: ignore[arg-type]
        ),
        ConfigurationError,
        r"^target_epsilon must be a finite number > 0, got '8'$",
    ),
    Case(
        "server-privacy-not-a-privacy",
        lambda _: _server(privacy="central"),
        ConfigurationError,
        r"^privacy must be a blazefl\.privacy\.Privacy, got 'central'$",
    ),
    Case(
        "server-budget-spent-by-the-first-round",
        lambda _: _server(
            privacy=Privacy(dp="central", noise_multiplier=1.0, target_epsilon=0.01)
        ),
        ConfigurationError,
        r"^target_epsilon=0\.01 is spent by the first round already \(epsilon "
        r"\d",
    ),
    Case(
        "cli-dp-with-median",
        _cli("--aggregator", "median", "--dp", "central", "--noise-multiplier", "1"),
        CommandUsageError,
        r"--dp central cannot be combined with --aggregator median: it selects or "
        r"ranks individual updates",
    ),
    Case(
        "cli-secagg-with-krum",
        _cli("--aggregator", "krum", "--byzantine-f", "1", "--secagg"),
        CommandUsageError,
        r"--secagg cannot be combined with --aggregator krum: it needs the "
        r"individual updates",
    ),
    Case(
        "cli-update-attack-with-dp",
        _cli("--attack", "sign-flip", "--dp", "central", "--noise-multiplier", "1"),
        CommandUsageError,
        r"--attack sign-flip cannot be combined with --dp or --secagg yet",
    ),
    Case(
        "cli-dp-on-the-cohort-executor",
        _cli("--executor", "cohort", "--dp", "central", "--noise-multiplier", "1"),
        CommandUsageError,
        r"--executor cohort cannot run --dp or --secagg: the batched step skips "
        r"the per-client clipping, noise and masks",
    ),
    Case(
        "cohort-private-client",
        lambda _: _client(privacy=Privacy(secagg=True)).as_cohort(),
        ConfigurationError,
        r"cohort execution cannot run this client work: it applies "
        r"blazefl\.privacy",
    ),
    # -- attacks and robust aggregation (issue 16) ------------------------------
    Case(
        "cli-krum-f-too-large",
        _cli(
            "--aggregator",
            "krum",
            "--byzantine-f",
            "5",
            "--clients",
            "10",
            "--sample-ratio",
            "1",
        ),
        CommandUsageError,
        r"Invalid value for '--byzantine-f': Krum\(f=5\) needs n >= 2f \+ 3 = 13 "
        r"client updates a round \(Blanchard et al\., 2017: n > 2f \+ 2\), got n=10",
    ),
    Case(
        "cli-bulyan-too-few-clients",
        _cli("--aggregator", "bulyan", "--attack", "sign-flip"),
        CommandUsageError,
        r"Invalid value for '--aggregator': Bulyan\(f=4\) needs n >= 4f \+ 3 = 19 "
        r"client updates a round .*got n=10.*\(f = 4: the attackers a round can "
        r"hold, from --attack-fraction 0\.2 of 20 clients; set --byzantine-f",
    ),
    Case(
        "cli-attack-fraction-one",
        _cli("--attack", "sign-flip", "--attack-fraction", "1"),
        CommandUsageError,
        r"Invalid value for '--attack-fraction': must be a finite number in "
        r"\[0, 1\), got 1\.0",
    ),
    Case(
        "cli-attack-fraction-without-attack",
        _cli("--attack-fraction", "0.2"),
        CommandUsageError,
        r"'--attack-fraction' applies only with --attack",
    ),
    Case(
        "cli-unknown-aggregator",
        _cli("--aggregator", "krun"),
        CommandUsageError,
        r"Invalid value for '--aggregator': 'krun' is not one of 'mean', 'median'",
    ),
    Case(
        "config-unknown-attack",
        _config_file('attack = "sign_flip"\n'),
        CommandUsageError,
        r"Invalid value for '--attack' \(attack in \S+\): 'sign_flip' is not one "
        r"of 'sign-flip'.*did you mean 'sign-flip'\?",
    ),
    Case(
        "cli-norm-bound-without-bound",
        _cli("--aggregator", "norm-bound"),
        CommandUsageError,
        r"'--aggregator' norm-bound needs --norm-bound M",
    ),
    Case(
        "cli-trim-beta-half",
        _cli("--aggregator", "trimmed-mean", "--trim-beta", "0.5"),
        CommandUsageError,
        r"Invalid value for '--trim-beta': TrimmedMean\(beta=0\.5\): beta, the "
        r"fraction trimmed from each side, must be in \[0, 0\.5\)",
    ),
    Case(
        "cli-byzantine-f-with-mean",
        _cli("--byzantine-f", "2"),
        CommandUsageError,
        r"'--byzantine-f' applies only with --aggregator median / trimmed-mean / "
        r"krum / multi-krum / bulyan",
    ),
    Case(
        "cli-attack-strength-nan",
        _cli("--attack", "noise", "--attack-strength", "nan"),
        CommandUsageError,
        r"Invalid value for '--attack-strength': must be a finite number > 0, "
        r"got nan",
    ),
    Case(
        "cli-label-flip-strength",
        _cli("--attack", "label-flip", "--attack-strength", "2"),
        CommandUsageError,
        r"Invalid value for '--attack-strength': attack 'label-flip' takes no "
        r"strength",
    ),
    Case(
        "cli-backdoor-not-images",
        _cli("--attack", "backdoor", "--dataset", "leaf-synthetic"),
        CommandUsageError,
        r"stamps a 2x2 trigger on images \(channels, height, width\); the data "
        r"set's samples have shape \(60,\)",
    ),
    Case(
        "server-krum-f-too-large",
        lambda _: _server(aggregator=Krum(f=1)),
        ConfigurationError,
        r"^Krum\(f=1\) needs n >= 2f \+ 3 = 5 client updates a round "
        r"\(Blanchard et al\., 2017: n > 2f \+ 2\), got n=4",
    ),
    Case(
        "server-own-arithmetic-aggregator",
        lambda _: _server(BlazeFLFedAvg(), aggregator=Median()),
        ConfigurationError,
        r"^BlazeFLFedAvg computes its own aggregate, so it cannot use the "
        r"aggregator Median\(f=0\)",
    ),
    Case(
        "attackers-fraction-negative",
        lambda _: draw_attackers(CLIENTS, -0.25, seed=0),
        ConfigurationError,
        r"^the attack fraction must be a finite number in \[0, 1\), got -0\.25$",
    ),
    Case(
        "cli-resume-checkpoint-not-torch",
        _resume_non_torch_checkpoint,
        CommandUsageError,
        r"run/checkpoint\.ckpt: its body \(19 bytes, digest valid\) is "
        r"not a torch\.save archive: it starts with b'not a to'",
    ),
    Case(
        "cli-resume-metrics-line-not-json",
        _resume_edited_metrics(b'{"round": 2, "train_loss": oops}'),
        CommandUsageError,
        r"metrics\.jsonl line 2 is not JSON: b'\{\"round\": 2, .*; blazefl "
        r"writes one JSON object a line: fix or delete that line",
    ),
    Case(
        "cli-resume-metrics-line-wrong-type",
        _resume_edited_metrics(b'{"round": "two"}'),
        CommandUsageError,
        r"metrics\.jsonl line 2: 'round' must be an integer >= 1, got 'two'",
    ),
    Case(
        "cli-resume-events-line-wrong-round",
        _resume_edited_metrics(
            b'{"event": "round_started", "round": -1}', "events.jsonl"
        ),
        CommandUsageError,
        r"events\.jsonl line \d+: 'round' must be an integer >= 0, got -1; "
        r"blazefl wrote no such line: fix or delete it",
    ),
    Case(
        "cli-resume-metrics-line-not-utf8",
        _resume_edited_metrics(b'{"round": 2, "note": "caf\xe9"}'),
        CommandUsageError,
        r"metrics\.jsonl line 2 is not UTF-8",
    ),
    # -- work that cannot fit ---------------------------------------------------
    Case(
        "cli-clients-a-billion",
        _cli("--clients", "1000000000"),
        CommandUsageError,
        r"this run needs about [\d.]+ TiB of memory \(data [\d.]+ TiB \+ .*\), more "
        r"than the [\d.]+ [GT]iB available \(MemAvailable .*\); use fewer clients "
        r"or samples, .* or pass --no-memory-check to run anyway",
    ),
    # -- folders the run cannot use --------------------------------------------
    Case(
        "cli-out-under-a-file",
        _out_under_a_file,
        CommandUsageError,
        r"Invalid value for '--out': cannot create \S+/afile/sub: Not a directory$",
    ),
    Case(
        "cli-out-under-proc",
        _cli(*TINY_RUN, "--out", "/proc/blazefl-hostile/run"),
        CommandUsageError,
        r"Invalid value for '--out': cannot create /proc/blazefl-hostile/run: No "
        r"such file or directory$",
    ),
    Case(
        "cli-data-dir-empty",
        _cli("--dataset", "mnist", "--data-dir", "{tmp}"),
        CommandUsageError,
        r"Invalid value for '--data-dir': MNIST files not found: expected "
        r"train-images-idx3-ubyte\[\.gz\].*; --data-dir must be a folder holding "
        r"the mnist files",
    ),
    Case(
        "checkpoint-appended-to",
        _appended,
        ConfigurationError,
        r"ckpt has 10 bytes after the \d+ its header declares: it was appended "
        r"to or altered$",
    ),
    Case(
        "cli-out-holds-users-files",
        _out_with_users_file,
        CommandUsageError,
        r"Invalid value for '--out': \S+ holds files this run did not write "
        r"\(metrics\.png\); a run writes only into a new or empty folder",
    ),
    Case(
        "cli-resume-folder-in-use",
        _resume_in_use,
        CommandUsageError,
        r"run folder \S+ is in use by another run: this process \(pid \d+, "
        r"through another object\), since \S+ \(.*\); one run at a time",
    ),
    Case(
        "cli-resume-checkpoint-dev-zero",
        _resume_with_checkpoint(lambda p: p.symlink_to("/dev/zero")),
        CommandUsageError,
        r"checkpoint\.ckpt \(a symbolic link to '/dev/zero'\) is a character "
        r"device; a checkpoint is read from a regular file only",
    ),
    Case(
        "cli-resume-checkpoint-fifo",
        _resume_with_checkpoint(os.mkfifo),
        CommandUsageError,
        r"checkpoint\.ckpt is a FIFO \(named pipe\); a checkpoint is read from "
        r"a regular file only",
    ),
    Case(
        "cli-resume-checkpoint-directory",
        _resume_with_checkpoint(Path.mkdir),
        CommandUsageError,
        r"checkpoint\.ckpt is a directory; a checkpoint is read from a regular "
        r"file only",
    ),
    Case(
        "cli-resume-checkpoint-dangling-link",
        _resume_with_checkpoint(lambda p: p.symlink_to(p.with_name("gone"))),
        CommandUsageError,
        r"checkpoint\.ckpt is a symbolic link to '\S+gone', which does not exist",
    ),
    Case(
        "state-file-in-use",
        _state_file_in_use,
        InUseError,
        r"^client_state_path '\S+clients\.sqlite' is in use by another run: this "
        r"process \(pid \d+, through another object\)",
    ),
    Case(
        "state-file-flipped-rng-digit",
        _flipped_rng_digit,
        IntegrityError,
        r"^client-state store '\S+clients\.sqlite': the stored state of client 2 "
        r"\(committed after round 1\) is damaged: it fails its digest",
    ),
    Case(
        "state-file-state-deleted",
        _deleted_state,
        IntegrityError,
        r"^client-state store '\S+clients\.sqlite' does not hold the states the "
        r"checkpoint after round 1 refers to: it recorded 4 client states",
    ),
]

SLOT_CASES = [c for c in CASES if isinstance(c.trigger, BadClient)]


def test_catalogue_covers_the_issue() -> None:
    """At least 30 cases, unique ids, and every failed-slot case names client BAD."""
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(f"client {BAD}" in c.match for c in SLOT_CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused(case: Case, tmp_path: Path) -> None:
    """The input is refused by the named error, naming the value and what was
    expected; for a client update, the round fails (policy fail_round)."""
    with pytest.raises(case.error, match=case.match):
        case.trigger(tmp_path)


@pytest.mark.parametrize("case", SLOT_CASES, ids=[c.id for c in SLOT_CASES])
def test_rejected_update_is_a_failed_slot(case: Case) -> None:
    """The bad client is one failed slot, logged and published as ClientFailed;
    fail_round applies nothing, drop aggregates the other three."""
    assert isinstance(case.trigger, BadClient)
    handler, sim = case.trigger.build("fail_round")
    before = _global(handler)
    with pytest.raises(RoundFailedError, match=case.match) as info:
        sim.run_sync(rounds=1)
    assert [type(f).__name__ for f in info.value.failures] == ["ClientFailure"]
    assert handler.round == 0
    assert torch.equal(_global(handler), before)

    handler, sim = case.trigger.build("drop")
    events: list[Any] = []

    async def main() -> None:
        async with sim.events() as stream:
            async with sim:
                await sim.run_round()
            events.extend([e async for e in stream])  # the stream ends on close

    with structlog.testing.capture_logs() as logs:
        anyio.run(main)

    assert handler.round == 1
    assert not torch.equal(_global(handler), before)
    (failed,) = [e for e in events if isinstance(e, ClientFailed)]
    # The work's own error, or the coordinator's refusal of what it sent.
    kind = "error" if case.id == "empty-client-trains" else "rejected"
    assert (failed.cid, failed.kind) == (BAD, kind)
    assert re.search(case.match, f"client {BAD}: {failed.error}")
    (finished,) = [e for e in events if isinstance(e, RoundFinished)]
    assert (finished.clients, finished.failed) == (CLIENTS, 1)
    (entry,) = [e for e in logs if e["event"] == "client_failed"]
    assert (entry["log_level"], entry["cid"], entry["round"]) == ("warning", BAD, 0)
    assert entry["error"] == failed.error
    assert "traceback" not in entry


def _global(handler: Any) -> torch.Tensor:
    if isinstance(handler, FederatedServer):
        return handler.params.clone()
    return torch.cat([p.detach().reshape(-1) for p in handler.model.parameters()])


@pytest.mark.parametrize(
    "kind", ["config-not-utf8", "out-under-a-file", "resume-metrics-line"]
)
def test_console_script_shows_no_traceback(kind: str, tmp_path: Path) -> None:
    """`python -m blazefl.cli run` (the console script's path, through
    `blazefl.cli.main`) exits 2 with one error line and no traceback."""
    args: list[str] = []
    if kind == "config-not-utf8":
        (tmp_path / "fl.toml").write_bytes(b"rounds = 2\n# caf\xe9\n")
        args = ["--config", str(tmp_path / "fl.toml")]
    elif kind == "out-under-a-file":
        (tmp_path / "afile").write_text("mine")
        args = [*TINY_RUN, "--out", str(tmp_path / "afile" / "sub")]
    else:
        out = _finished_run(tmp_path)
        with (out / "metrics.jsonl").open("ab") as f:
            f.write(b'{"round": null}\n')
        args = ["--resume", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "blazefl.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1
    assert result.stderr.rstrip().endswith(errors[0])


def test_docs_table_lists_every_case() -> None:
    """docs/reliability.md's table names every case of the catalogue."""
    docs = Path(__file__).parents[1] / "docs" / "reliability.md"
    section = docs.read_text().split("## Hostile and mistaken input", 1)[1]
    section = section.split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE))
    assert listed == {c.id for c in CASES}
