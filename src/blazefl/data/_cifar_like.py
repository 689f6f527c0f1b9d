"""A generated data set of CIFAR-10's shape, for benchmarks that cannot download."""

from __future__ import annotations

from blazefl.data._synthetic import SyntheticPartitionedDataset

__all__ = ["SyntheticCIFAR10"]

CIFAR10_SHAPE = (3, 32, 32)


class SyntheticCIFAR10(SyntheticPartitionedDataset):
    """`SyntheticPartitionedDataset` with CIFAR-10's shape: 3x32x32 images, 10 classes.

    Use it to measure throughput, memory and scaling with CIFAR-sized inputs
    and models, with no download; it is the 12x12 generator with
    ``image_shape=(3, 32, 32)`` and bit-identical to it for equal arguments.
    Labels follow each client's Dirichlet(`alpha`) class mix.

    It is not a stand-in for CIFAR-10's difficulty: with 3072 pixels the
    default `noise` leaves the classes far apart (the reference CNN is near
    100% after two epochs). Raise `noise` for a task that is slower to learn:
    at 8, that CNN is near 40% after two epochs on 2,000 images. The defaults build
    5,000 training and 1,000 test images in about a second; CIFAR-10's own
    sizes are ``num_clients * samples_per_client = 50_000`` and
    ``test_samples=10_000`` (about 750 MB of float32).
    """

    def __init__(
        self,
        num_clients: int = 20,
        *,
        seed: int = 0,
        samples_per_client: int = 250,
        alpha: float = 0.5,
        test_samples: int = 1000,
        noise: float = 3.0,
    ) -> None:
        super().__init__(
            num_clients,
            seed=seed,
            num_classes=10,
            image_shape=CIFAR10_SHAPE,
            samples_per_client=samples_per_client,
            alpha=alpha,
            test_samples=test_samples,
            noise=noise,
        )
