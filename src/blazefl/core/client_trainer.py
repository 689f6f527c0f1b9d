"""BlazeFL 3.0's ``blazefl.core.client_trainer``: the client-side protocol and
the two pool trainers, importable by their original module path."""

from blazefl import _exports
from blazefl.core._process_trainer import ProcessPoolClientTrainer
from blazefl.core._protocols import BaseClientTrainer
from blazefl.core._thread_trainer import ThreadPoolClientTrainer

__all__ = ["BaseClientTrainer", "ProcessPoolClientTrainer", "ThreadPoolClientTrainer"]

_exports.publish(globals())
