"""Device traces on disk: the project's CSV/JSON format, and FedScale's pickles.

The CSV format (one header line, one line per client, ``#`` lines ignored)::

    client_id,compute_s_per_sample,download_mbps,upload_mbps,latency_s,windows
    0,0.004,20,5,0.05,
    1,0.030,2.5,1,0.2,0-1800;3600-5400

``latency_s`` and ``windows`` may be left out (0 and always online);
``windows`` is ``start-end`` online intervals in seconds, ``;``-separated,
repeating every ``period`` seconds when `read_trace` is given one. The JSON
format holds the same fields: ``{"period": 86400, "clients": [{"client_id": 0,
"compute_s_per_sample": 0.004, "download_mbps": 20, "upload_mbps": 5,
"latency_s": 0.05, "windows": [[0, 1800]], "period": null}]}`` (a client's
own ``period`` overrides the file's). Client ids must be exactly 0..n-1;
errors name the line (CSV) or the entry (JSON).

FedScale publishes its device and availability traces as Python pickles,
which can run code when loaded. `convert_fedscale` reads them with an
unpickler that accepts only plain numbers, strings, lists and dicts and
writes this module's JSON format.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.simtime._profiles import ProfileSet, Windows

__all__ = ["convert_fedscale", "read_trace", "write_trace"]

_REQUIRED = ("client_id", "compute_s_per_sample", "download_mbps", "upload_mbps")
_OPTIONAL = ("latency_s", "windows")


def read_trace(
    path: str | os.PathLike[str],
    *,
    num_clients: int | None = None,
    period: float | None = None,
) -> ProfileSet:
    """The profiles in a ``.csv`` or ``.json`` trace file (see the module doc).

    :param num_clients: the federation's size: a trace must describe at least
        clients 0..num_clients-1 (a missing one is named).
    :param period: seconds after which a CSV trace's windows repeat.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigurationError(f"trace file {source} does not exist")
    text = source.read_text(encoding="utf-8")
    if source.suffix.lower() == ".json":
        rows, periods = _json_rows(source, text, period)
    elif source.suffix.lower() == ".csv":
        rows = _csv_rows(source, text)
        periods = [period] * len(rows)
    else:
        raise ConfigurationError(
            f"trace file {source} must end in .csv or .json, got {source.suffix!r}"
        )
    if not rows:
        raise ConfigurationError(f"trace file {source} describes no clients")
    by_id: dict[int, tuple[str, tuple[float, float, float, float, Windows | None]]] = {}
    ordered_periods: dict[int, float | None] = {}
    for (where, cid, values), p in zip(rows, periods, strict=True):
        if cid in by_id:
            raise ConfigurationError(
                f"{source}: {where}: client {cid} appears twice (first at "
                f"{by_id[cid][0]})"
            )
        by_id[cid] = (where, values)
        ordered_periods[cid] = p
    n = max(by_id) + 1
    missing = [c for c in range(max(n, num_clients or 0)) if c not in by_id]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (
            " ..." if len(missing) > 10 else ""
        )
        raise ConfigurationError(
            f"{source} has no profile for clients {shown} ({len(missing)} missing); "
            "a trace must describe every client 0..n-1"
        )
    cols = [by_id[c][1] for c in range(n)]
    try:
        return ProfileSet(
            [c[0] for c in cols],
            [c[1] * 1e6 for c in cols],
            [c[2] * 1e6 for c in cols],
            [c[3] for c in cols],
            windows=[c[4] for c in cols],
            period=[ordered_periods[c] for c in range(n)],
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


Row = tuple[str, int, tuple[float, float, float, float, Windows | None]]


def _csv_rows(source: Path, text: str) -> list[Row]:
    lines = [
        (i, line)
        for i, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return []
    header_no, header_line = lines[0]
    header = [h.strip() for h in next(csv.reader([header_line]))]
    unknown = [h for h in header if h not in _REQUIRED + _OPTIONAL]
    absent = [h for h in _REQUIRED if h not in header]
    if unknown or absent:
        raise ConfigurationError(
            f"{source}: line {header_no}: header {header} "
            + (f"has unknown columns {unknown}" if unknown else f"lacks {absent}")
            + f"; expected {list(_REQUIRED)} and optionally {list(_OPTIONAL)}"
        )
    rows = []
    for number, line in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([line]))]
        where = f"line {number}"
        if len(cells) != len(header):
            raise ConfigurationError(
                f"{source}: {where}: {len(cells)} fields, the header has "
                f"{len(header)} ({line!r})"
            )
        record: dict[str, Any] = dict(zip(header, cells, strict=True))
        rows.append(_row(source, where, record, csv_windows=True))
    return rows


def _json_rows(
    source: Path, text: str, period: float | None
) -> tuple[list[Row], list[float | None]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        raise ConfigurationError(f'{source} must hold an object with a "clients" list')
    default = data.get("period", period)
    rows, periods = [], []
    for i, entry in enumerate(data["clients"]):
        where = f"clients[{i}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{source}: {where} is not an object")
        rows.append(_row(source, where, entry, csv_windows=False))
        periods.append(entry.get("period", default))
    return rows, periods


def _row(source: Path, where: str, record: dict[str, Any], *, csv_windows: bool) -> Row:
    def number(key: str, default: float | None = None) -> float:
        raw = record.get(key, "")
        if raw in ("", None) and default is not None:
            return default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{source}: {where}: {key}={raw!r} is not a number"
            ) from None
        bound_ok = value >= 0 if key == "latency_s" else value > 0
        if not math.isfinite(value) or not bound_ok:
            bound = ">= 0" if key == "latency_s" else "> 0"
            raise ConfigurationError(
                f"{source}: {where}: {key}={raw!r}; expected a finite number {bound}"
            )
        return value

    missing = [k for k in _REQUIRED if record.get(k) in (None, "")]
    if missing:
        raise ConfigurationError(f"{source}: {where}: no value for {missing}")
    raw_id = record["client_id"]
    try:
        cid = int(raw_id)
        if cid < 0 or (isinstance(raw_id, float | str) and float(raw_id) != cid):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{source}: {where}: client_id={raw_id!r}; expected an integer >= 0"
        ) from None
    raw_windows = record.get("windows")
    try:
        windows = (
            _parse_windows(raw_windows) if csv_windows else _json_windows(raw_windows)
        )
    except ValueError as exc:
        raise ConfigurationError(f"{source}: {where}: windows: {exc}") from None
    values = (
        number("compute_s_per_sample"),
        number("download_mbps"),
        number("upload_mbps"),
        number("latency_s", 0.0),
        windows,
    )
    return (where, cid, values)


def _parse_windows(raw: object) -> Windows | None:
    if raw in (None, ""):
        return None
    out = []
    for part in str(raw).split(";"):
        start, sep, end = part.partition("-")
        if not sep:
            raise ValueError(f"{part!r} is not start-end")
        out.append((float(start), float(end)))
    return tuple(out)


def _json_windows(raw: object) -> Windows | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ValueError(f"{raw!r} is not a list of [start, end] pairs")
    out = []
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError(f"{pair!r} is not a [start, end] pair")
        out.append((float(pair[0]), float(pair[1])))
    return tuple(out)


def write_trace(profiles: ProfileSet, path: str | os.PathLike[str]) -> None:
    """Write ``profiles`` in the JSON trace format (`read_trace` reads it back)."""
    clients = []
    for cid in range(len(profiles)):
        p = profiles[cid]
        clients.append(
            {
                "client_id": cid,
                "compute_s_per_sample": p.compute_s_per_sample,
                "download_mbps": p.download_bps / 1e6,
                "upload_mbps": p.upload_bps / 1e6,
                "latency_s": p.latency_s,
                "windows": None if p.windows is None else [list(w) for w in p.windows],
                "period": p.period,
            }
        )
    Path(path).write_text(json.dumps({"clients": clients}), encoding="utf-8")


class _PlainUnpickler(pickle.Unpickler):
    """Plain data only: any class or function reference in the pickle is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise ConfigurationError(
            f"the pickle references {module}.{name}; only plain numbers, strings, "
            "lists and dicts are accepted from a trace"
        )


def _load_plain(path: Path) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise ConfigurationError(f"{path}: {exc}") from None
        raise ConfigurationError(f"{path} is not a readable pickle: {exc}") from None


def convert_fedscale(
    device_pickle: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    behaviour_pickle: str | os.PathLike[str] | None = None,
) -> int:
    """Convert FedScale's traces to this module's JSON format; return the count.

    ``device_pickle`` is FedScale's ``client_device_capacity``: ``{id:
    {"computation": ms per sample, "communication": kbit/s}}``;
    ``behaviour_pickle`` its ``client_behave_trace``: ``{id: {"active":
    [t...], "inactive": [t...], "finish_time": T}}`` (online from
    ``active[i]`` to ``inactive[i]``, repeating every ``T`` seconds). Clients
    are renumbered 0..n-1 in the order of their FedScale ids.
    """
    devices = _load_plain(Path(device_pickle))
    if not isinstance(devices, dict) or not devices:
        raise ConfigurationError(f"{device_pickle}: expected a non-empty dict")
    behave = {} if behaviour_pickle is None else _load_plain(Path(behaviour_pickle))
    if not isinstance(behave, dict):
        raise ConfigurationError(f"{behaviour_pickle}: expected a dict")
    clients = []
    for new_id, key in enumerate(sorted(devices)):
        entry = devices[key]
        try:
            compute = float(entry["computation"]) / 1000.0
            mbps = float(entry["communication"]) / 1000.0
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                f"{device_pickle}: client {key!r}: expected computation and "
                f"communication numbers, got {entry!r}"
            ) from None
        record: dict[str, Any] = {
            "client_id": new_id,
            "compute_s_per_sample": compute,
            "download_mbps": mbps,
            "upload_mbps": mbps,
        }
        trace = behave.get(key)
        if trace is not None:
            try:
                active = [float(t) for t in trace["active"]]
                inactive = [float(t) for t in trace["inactive"]]
                record["period"] = float(trace["finish_time"])
            except (KeyError, TypeError, ValueError):
                raise ConfigurationError(
                    f"{behaviour_pickle}: client {key!r}: expected active, "
                    "inactive and finish_time"
                ) from None
            record["windows"] = [
                [a, min(b, record["period"])]
                for a, b in zip(active, inactive, strict=False)
                if b > a and a < record["period"]
            ]
        clients.append(record)
    Path(out).write_text(json.dumps({"clients": clients}), encoding="utf-8")
    return len(clients)
