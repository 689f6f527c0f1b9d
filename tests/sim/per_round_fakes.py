"""Data sets with per-round state, importable by reference from process workers."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from blazefl.data import SyntheticPartitionedDataset


class CurriculumData(SyntheticPartitionedDataset):
    """A user's data set whose batch size grows with a stage the user raises
    between rounds: per-round state that process workers must see."""

    stage = 1

    def get_dataloader(
        self,
        type_: str,
        cid: int | None,
        batch_size: int | None = None,
        generator: Any = None,
    ) -> Any:
        if type_ == "train" and batch_size is not None:
            batch_size *= self.stage
        return super().get_dataloader(type_, cid, batch_size, generator)


#: How often a data set of the classes below was pickled (in this process).
PICKLED: dict[str, int] = {}


class _Counted(SyntheticPartitionedDataset):
    def __getstate__(self) -> dict[str, Any]:
        name = type(self).__name__
        PICKLED[name] = PICKLED.get(name, 0) + 1
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class DeclaredStatic(_Counted):
    """Declares that it never changes: sent to each worker once."""

    def __blazefl_version__(self) -> Hashable:
        return "never changes"


class Undeclared(_Counted):
    """Declares nothing: sent again every round, as BlazeFL does."""

    def __blazefl_version__(self) -> Hashable:
        return object()
