"""The models LEAF's baselines train on its data sets, in PyTorch.

`LeafFEMNISTCNN` and `LeafCharLSTM` follow the reference models of LEAF
(Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018):
``femnist/cnn.py`` (two 5x5 convolutions with "same" padding, 32 and 64
filters, each followed by 2x2 max-pooling, a 2048-unit dense layer) and
``shakespeare/stacked_lstm.py`` (an 8-dimensional character embedding, two
LSTM layers of 256 units, a dense layer over the last step's output).
`BagOfWordsClassifier` is a small text model for Sent140 that needs no
pre-trained embeddings (LEAF's own Sent140 models look words up in GloVe,
which would need a download): the mean of learned word embeddings, then a
linear layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blazefl._validate import check_int

__all__ = ["BagOfWordsClassifier", "LeafCharLSTM", "LeafFEMNISTCNN"]


class LeafFEMNISTCNN(nn.Module):
    """LEAF's FEMNIST CNN for 1x28x28 images (62 classes by default)."""

    def __init__(self, num_classes: int = 62) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 2048)
        self.fc2 = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)  # type: ignore[no-any-return]


class LeafCharLSTM(nn.Module):
    """LEAF's Shakespeare model: next character from a window of character ids.

    Inputs are int64 ``(batch, seq_len)`` ids in ``range(vocab_size)``; the
    output scores the `vocab_size` possible next characters.
    """

    def __init__(
        self, vocab_size: int = 80, embedding_dim: int = 8, hidden_size: int = 256
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 2)
        check_int("embedding_dim", embedding_dim)
        check_int("hidden_size", hidden_size)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1, :])  # type: ignore[no-any-return]


class BagOfWordsClassifier(nn.Module):
    """Mean of word embeddings, then a linear layer: a text model with no download.

    Inputs are int64 ``(batch, words)`` ids in ``0 .. vocab_size``, 0 being
    padding (ignored), as `blazefl.data.sent140_token_ids` writes them.
    """

    def __init__(
        self, vocab_size: int, num_classes: int = 2, embedding_dim: int = 32
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 2)
        check_int("num_classes", num_classes, 2)
        check_int("embedding_dim", embedding_dim)
        self.embedding = nn.EmbeddingBag(
            vocab_size + 1, embedding_dim, mode="mean", padding_idx=0
        )
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(x))  # type: ignore[no-any-return]
