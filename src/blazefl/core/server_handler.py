"""BlazeFL 3.0's ``blazefl.core.server_handler``: the server-side protocol,
importable by its original module path."""

from blazefl import _exports
from blazefl.core._protocols import BaseServerHandler

__all__ = ["BaseServerHandler"]

_exports.publish(globals())
