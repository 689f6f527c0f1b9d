"""How a split looks: per-client sizes and classes, to check before training.

`partition_report` summarises any list of index arrays over a label vector
(sizes, classes per client, the label histogram), so a user sees at a glance
whether a non-IID split is as skewed as intended, or degenerate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int
from blazefl.data._partition import LabelsLike, as_labels

__all__ = ["PartitionReport", "partition_report"]


@dataclass(frozen=True, slots=True, eq=False)
class PartitionReport:
    """Per-client sizes and label histograms of a split; print it to check one.

    `histograms` has one row per client and one column per class; `shifts`,
    when given, describes each client's feature shift (`client_shifts`).
    """

    sizes: npt.NDArray[np.int64]
    histograms: npt.NDArray[np.int64]
    shifts: tuple[str, ...] | None = None

    @property
    def num_clients(self) -> int:
        return int(self.sizes.size)

    @property
    def num_classes(self) -> int:
        return int(self.histograms.shape[1])

    @property
    def min_size(self) -> int:
        return int(self.sizes.min())

    @property
    def median_size(self) -> float:
        return float(np.median(self.sizes))

    @property
    def max_size(self) -> int:
        return int(self.sizes.max())

    @property
    def mean_classes_per_client(self) -> float:
        """Mean number of classes with at least one sample, over clients."""
        return float((self.histograms > 0).sum(axis=1).mean())

    def table(self, max_rows: int | None = 20, top: int = 3) -> str:
        """Render summary lines and one row per client (the first `max_rows`)."""
        lines = [
            f"{self.num_clients} clients, {self.num_classes} classes, "
            f"{int(self.sizes.sum())} samples",
            f"size min/median/max: {self.min_size}/{self.median_size:g}/"
            f"{self.max_size}; classes per client: mean "
            f"{self.mean_classes_per_client:.2f}",
            f"{'client':>6} {'size':>7} {'classes':>7}  top classes (label:count)"
            + ("  | feature shift" if self.shifts is not None else ""),
        ]
        shown = (
            self.num_clients if max_rows is None else min(max_rows, self.num_clients)
        )
        for cid in range(shown):
            hist = self.histograms[cid]
            best = np.argsort(-hist, kind="stable")[:top]
            tops = " ".join(f"{c}:{hist[c]}" for c in best if hist[c] > 0)
            shift = "" if self.shifts is None else f"  | {self.shifts[cid]}"
            lines.append(
                f"{cid:>6} {self.sizes[cid]:>7} {int((hist > 0).sum()):>7}  {tops}"
                + shift
            )
        if shown < self.num_clients:
            lines.append(f"... ({self.num_clients - shown} more clients)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def partition_report(
    labels: LabelsLike,
    parts: Sequence[npt.ArrayLike | torch.Tensor],
    num_classes: int | None = None,
    *,
    shifts: Sequence[object] | None = None,
) -> PartitionReport:
    """Count each client's samples per class; `num_classes` defaults to max + 1.

    ``shifts`` (one per client, e.g. `blazefl.data.client_shifts`) adds each
    client's feature shift to the table.
    """
    y = as_labels(labels)
    top = int(y.max()) + 1
    width = top if num_classes is None else check_int("num_classes", num_classes, 1)
    if width < top:
        raise ConfigurationError(
            f"num_classes={width} but labels contain the label {top - 1}"
        )
    if len(parts) == 0:
        raise ConfigurationError("parts must hold at least one client's indices")
    if shifts is not None and len(shifts) != len(parts):
        raise ConfigurationError(
            f"shifts lists {len(shifts)} clients but parts lists {len(parts)}"
        )
    hists = np.zeros((len(parts), width), dtype=np.int64)
    for cid, part in enumerate(parts):
        idx = np.asarray(part.numpy() if isinstance(part, torch.Tensor) else part)
        if idx.size and (
            idx.ndim != 1
            or idx.dtype.kind not in "iu"
            or idx.min() < 0
            or idx.max() >= y.size
        ):
            raise ConfigurationError(
                f"parts[{cid}] must be 1-D integer indices in [0, {y.size}), got "
                f"dtype {idx.dtype}, shape {idx.shape}"
            )
        hists[cid] = np.bincount(y[idx.astype(np.int64)], minlength=width)
    hists.setflags(write=False)
    sizes = hists.sum(axis=1)
    sizes.setflags(write=False)
    described = None if shifts is None else tuple(str(x) for x in shifts)
    return PartitionReport(sizes=sizes, histograms=hists, shifts=described)
