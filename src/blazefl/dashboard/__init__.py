"""A live dashboard for running and finished simulations, in the browser.

``blazefl run --dashboard`` serves one while the run trains, ``blazefl serve
RUNS_DIR ...`` for any run folders (sweeps too, their runs on one chart):
loss and accuracy per round (or against virtual time), the latest round's
clients with their training times and failures, the round timeline, the
run's config and status, and any other per-round metric a run reports. The
page follows each run's ``events.jsonl`` over server-sent events (`/events`),
so a reload replays the history and several tabs and runs can watch at once.
It listens on 127.0.0.1 unless told otherwise, serves only its own files,
and needs no build step: the charting library (uPlot, MIT) ships inside the
package. Needs the ``dashboard`` extra (starlette, uvicorn).
"""

from blazefl import _exports
from blazefl.dashboard._runs import find_runs
from blazefl.dashboard._server import LOOPBACK, DashboardServer
from blazefl.dashboard._sse import HEARTBEAT, EventLog, frame, last_event_id

__all__ = [
    "HEARTBEAT",
    "LOOPBACK",
    "DashboardServer",
    "EventLog",
    "find_runs",
    "frame",
    "last_event_id",
]

_exports.publish(globals())
