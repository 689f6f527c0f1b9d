"""A hand-written BlazeFL 3.0 server handler and thread-pool trainer.

Written against BlazeFL 3.0's module paths (``blazefl.core.client_trainer``,
``blazefl.core.server_handler``, ``blazefl.core.utils``,
``blazefl.reproducibility.generator``) with its ``worker`` signature and a
``progress_fn`` override, and run by its own loop: code written for 3.0 runs
here unchanged. ``python examples/blazefl3-thread-trainer/main.py``.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from blazefl.core.client_trainer import ThreadPoolClientTrainer
from blazefl.core.server_handler import BaseServerHandler
from blazefl.core.utils import deserialize_model, serialize_model
from blazefl.reproducibility.generator import create_rng_suite


@dataclass
class Upload:
    cid: int
    params: torch.Tensor
    size: int


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def client_data(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``cid``'s points of y = 2a - b + 0.5c, with its own noise."""
    gen = torch.Generator().manual_seed(100 + cid)
    x = torch.randn(32 + 8 * cid, 3, generator=gen)
    y = x @ torch.tensor([[2.0], [-1.0], [0.5]]) + 0.1 * torch.randn(
        len(x), 1, generator=gen
    )
    return x, y


class Server(BaseServerHandler[Upload, torch.Tensor]):
    def __init__(self, num_clients: int, per_round: int, rounds: int) -> None:
        self.model = make_model()
        self.num_clients, self.per_round, self.rounds = num_clients, per_round, rounds
        self.round = 0
        self.rng = create_rng_suite(0)
        self.buffer: list[Upload] = []

    def sample_clients(self) -> list[int]:
        return sorted(self.rng.python.sample(range(self.num_clients), self.per_round))

    def downlink_package(self) -> torch.Tensor:
        return serialize_model(self.model)

    def is_stopped(self) -> bool:
        return self.round >= self.rounds

    def global_update(self, buffer: list[Upload]) -> None:
        total = sum(u.size for u in buffer)
        mean = torch.zeros_like(buffer[0].params)
        for u in buffer:
            mean.add_(u.params, alpha=u.size / total)
        deserialize_model(self.model, mean)

    def load(self, payload: Upload) -> bool:
        self.buffer.append(payload)
        if len(self.buffer) < self.per_round:
            return False
        self.global_update(self.buffer)
        self.buffer, self.round = [], self.round + 1
        return True

    def loss(self) -> float:
        x, y = zip(*(client_data(c) for c in range(self.num_clients)), strict=True)
        with torch.no_grad():
            return float(nn.functional.mse_loss(self.model(torch.cat(x)), torch.cat(y)))


class Trainer(ThreadPoolClientTrainer[Upload, torch.Tensor]):
    def __init__(self, num_parallels: int) -> None:
        self.num_parallels = num_parallels
        self.device, self.device_count = "cpu", 0
        self.cache: list[Upload] = []
        self.stop_event = threading.Event()

    def worker(
        self, cid: int, device: str, payload: torch.Tensor, stop_event: threading.Event
    ) -> Upload:
        model = make_model()
        deserialize_model(model, payload)
        x, y = client_data(cid)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(20):
            if stop_event.is_set():
                break
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        return Upload(cid, serialize_model(model), len(x))

    def progress_fn(self, it: list[Any]) -> Any:
        return tqdm(it, total=len(it), desc="clients", leave=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    server, trainer = Server(num_clients=6, per_round=3, rounds=args.rounds), Trainer(2)
    while not server.is_stopped():
        trainer.local_process(server.downlink_package(), server.sample_clients())
        for package in trainer.uplink_package():
            server.load(package)
        print(f"round {server.round}: loss {server.loss():.4f}")


if __name__ == "__main__":
    main()
