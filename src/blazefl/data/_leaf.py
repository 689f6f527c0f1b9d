"""The Synthetic(alpha, beta) federated benchmark of FedProx and LEAF.

Use `LeafSyntheticDataset` to reproduce the synthetic experiments of Li et al.,
"Federated Optimization in Heterogeneous Networks" (FedProx, MLSys 2020), whose
generator LEAF ships as its ``synthetic`` data set: tabular samples, a
different linear labelling rule on every client, and power-law client sizes.
`alpha` controls how much the clients' models differ, `beta` how much their
inputs differ; ``iid=True`` gives the paper's IID control (one shared model,
one shared input distribution).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data._partitioned import TensorPartitionedDataset, check_int, check_seed

__all__ = ["LeafSyntheticDataset"]

# Client sizes are floor(lognormal(mean 4, sigma 2)) + min_samples, as in the
# reference generator (FedProx's generate_synthetic.py).
_SIZE_LOG_MEAN = 4.0
_SIZE_LOG_SIGMA = 2.0
# Feature j (1-based) has variance j ** -1.2 in the reference generator.
_COVARIANCE_DECAY = 1.2


def _check_scale(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"{name} must be a non-negative finite number, got {value!r}"
        )
    return float(value)


class LeafSyntheticDataset(TensorPartitionedDataset):
    """Synthetic(`alpha`, `beta`): every client labels Gaussian inputs its own way.

    For client k the generator draws u_k ~ N(0, alpha^2), B_k ~ N(0, beta^2),
    W_k ~ N(u_k, 1) (a `num_features` x `num_classes` matrix), b_k ~ N(u_k, 1),
    v_k ~ N(B_k, 1) (a mean per feature), then samples x ~ N(v_k, Sigma) with
    Sigma diagonal, Sigma_jj = j^-1.2, labelled y = argmax(softmax(W_k^T x +
    b_k)). As in the reference code, `alpha` and `beta` are standard
    deviations; the paper's Synthetic(0,0), (0.5,0.5) and (1,1) are
    ``alpha=beta=0``, ``0.5`` and ``1``. With ``iid=True`` every client shares
    one W, b ~ N(0, 1) and x ~ N(0, Sigma).

    Client k generates floor(lognormal(4, 2)) + `min_samples` samples, a
    power law: most clients hold tens of samples, a few thousands. The last
    `test_fraction` of each client's samples (at least one, while one is left
    to train on) form its test part; the server-side test set
    (``get_dataset("test", None)``) is the union of those parts, in client
    order. Inputs are float32 of shape ``(num_features,)``; labels need not
    cover every class on every client.

    Everything comes from `seed`: equal arguments give identical tensors.
    """

    def __init__(
        self,
        num_clients: int = 30,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        iid: bool = False,
        num_features: int = 60,
        num_classes: int = 10,
        seed: int = 0,
        min_samples: int = 50,
        test_fraction: float = 0.2,
    ) -> None:
        check_int("num_clients", num_clients, 1)
        check_int("num_features", num_features, 1)
        check_int("num_classes", num_classes, 2)
        check_int("min_samples", min_samples, 2)
        check_seed(seed)
        alpha = _check_scale("alpha", alpha)
        beta = _check_scale("beta", beta)
        if not isinstance(iid, bool):
            raise ConfigurationError(f"iid must be True or False, got {iid!r}")
        if (
            isinstance(test_fraction, bool)
            or not isinstance(test_fraction, int | float)
            or not 0 < test_fraction < 1
        ):
            raise ConfigurationError(
                f"test_fraction must be a number strictly between 0 and 1, "
                f"got {test_fraction!r}"
            )
        self._alpha = alpha
        self._beta = beta
        self._iid = iid

        size_seq, prior_seq, sample_seq = np.random.SeedSequence(seed).spawn(3)
        sizes = (
            np.random.default_rng(size_seq)
            .lognormal(_SIZE_LOG_MEAN, _SIZE_LOG_SIGMA, num_clients)
            .astype(np.int64)
            + min_samples
        )
        prior = np.random.default_rng(prior_seq)
        scale = np.arange(1, num_features + 1, dtype=np.float64) ** (
            -_COVARIANCE_DECAY / 2
        )
        if iid:
            shared_w = prior.normal(0.0, 1.0, (num_features, num_classes))
            shared_b = prior.normal(0.0, 1.0, num_classes)
        else:
            u = prior.normal(0.0, alpha, num_clients)
            big_b = prior.normal(0.0, beta, num_clients)

        train_x, train_y, test_x, test_y = [], [], [], []
        # One stream per client: a client's samples do not depend on the others.
        client_seqs = sample_seq.spawn(num_clients)
        for k in range(num_clients):
            rng = np.random.default_rng(client_seqs[k])
            if iid:
                w, b, v = shared_w, shared_b, np.zeros(num_features)
            else:
                w = rng.normal(u[k], 1.0, (num_features, num_classes))
                b = rng.normal(u[k], 1.0, num_classes)
                v = rng.normal(big_b[k], 1.0, num_features)
            n = int(sizes[k])
            x = v + scale * rng.standard_normal((n, num_features))
            # softmax is monotone, so argmax of the logits is the same label.
            y = np.argmax(x @ w + b, axis=1)
            n_test = min(max(1, round(test_fraction * n)), n - 1)
            train_x.append(x[: n - n_test])
            train_y.append(y[: n - n_test])
            test_x.append(x[n - n_test :])
            test_y.append(y[n - n_test :])

        train_sizes = [len(part) for part in train_y]
        bounds = np.cumsum([0, *train_sizes])
        super().__init__(
            torch.from_numpy(np.concatenate(train_x).astype(np.float32)),
            torch.from_numpy(np.concatenate(train_y).astype(np.int64)),
            [torch.arange(lo, hi) for lo, hi in itertools.pairwise(bounds.tolist())],
            torch.from_numpy(np.concatenate(test_x).astype(np.float32)),
            torch.from_numpy(np.concatenate(test_y).astype(np.int64)),
            num_classes=num_classes,
        )

    @property
    def alpha(self) -> float:
        """The spread of the clients' model means (0: all centred alike)."""
        return self._alpha

    @property
    def beta(self) -> float:
        """The spread of the clients' input means (0: all centred alike)."""
        return self._beta

    @property
    def iid(self) -> bool:
        """Whether all clients share one model and one input distribution."""
        return self._iid
