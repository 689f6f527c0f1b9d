"""Trace files: the CSV/JSON format, line-numbered errors, FedScale's pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from blazefl import ConfigurationError
from blazefl.simtime import convert_fedscale, generate_profiles, read_trace, write_trace

CSV = """# a small trace
client_id,compute_s_per_sample,download_mbps,upload_mbps,latency_s,windows
0,0.004,20,5,0.05,
1,0.03,2.5,1,0.2,0-1800;3600-5400
"""


def test_csv_trace_is_read(tmp_path: Path) -> None:
    """Columns become profiles; Mbit/s become bit/s; windows are parsed."""
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    p = read_trace(path)
    assert len(p) == 2
    assert p[0].download_bps == 20e6
    assert p[0].windows is None
    assert p[1].windows == ((0.0, 1800.0), (3600.0, 5400.0))
    assert p[1].latency_s == 0.2


def test_malformed_row_names_its_line(tmp_path: Path) -> None:
    """A bad number is reported with its line number in the file."""
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("0,0.004,20", "0,fast,20"))
    with pytest.raises(
        ConfigurationError, match=r"line 3: compute_s_per_sample='fast'"
    ):
        read_trace(path)


def test_negative_speed_in_a_trace_names_its_line(tmp_path: Path) -> None:
    """A negative speed is refused with its line number."""
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("1,0.03,", "1,-0.03,"))
    with pytest.raises(
        ConfigurationError, match=r"line 4: compute_s_per_sample='-0\.03'"
    ):
        read_trace(path)


def test_short_row_names_its_line(tmp_path: Path) -> None:
    """A row with too few fields is named."""
    path = tmp_path / "t.csv"
    path.write_text(CSV + "2,0.01\n")
    with pytest.raises(ConfigurationError, match=r"line 5: 2 fields, the header has 6"):
        read_trace(path)


def test_missing_clients_are_named(tmp_path: Path) -> None:
    """Ids must be 0..n-1, and cover the federation."""
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    with pytest.raises(ConfigurationError, match=r"no profile for clients 2, 3"):
        read_trace(path, num_clients=4)
    path.write_text(CSV.replace("\n1,", "\n3,"))
    with pytest.raises(ConfigurationError, match=r"no profile for clients 1, 2"):
        read_trace(path)


def test_duplicate_client_names_both_lines(tmp_path: Path) -> None:
    """A client listed twice is refused with both places."""
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("\n1,", "\n0,"))
    with pytest.raises(
        ConfigurationError, match=r"line 4: client 0 appears twice \(first at line 3\)"
    ):
        read_trace(path)


def test_json_round_trip(tmp_path: Path) -> None:
    """write_trace then read_trace gives the same profiles."""
    profiles = generate_profiles(20, 1, online_fraction=0.5, period=60.0)
    path = tmp_path / "t.json"
    write_trace(profiles, path)
    back = read_trace(path)
    for cid in range(20):
        a, b = profiles[cid], back[cid]
        assert a.compute_s_per_sample == b.compute_s_per_sample
        assert a.windows == b.windows
        assert a.period == b.period
        assert a.download_bps == pytest.approx(b.download_bps, rel=1e-12)


def test_fedscale_pickles_convert(tmp_path: Path) -> None:
    """FedScale's device and behaviour dicts become a JSON trace."""
    devices = {
        1: {"computation": 40.0, "communication": 8000.0},
        5: {"computation": 10.0, "communication": 2000.0},
    }
    behave = {
        1: {"active": [0.0, 500.0], "inactive": [100.0, 800.0], "finish_time": 1000.0}
    }
    (tmp_path / "dev.pkl").write_bytes(pickle.dumps(devices))
    (tmp_path / "beh.pkl").write_bytes(pickle.dumps(behave))
    out = tmp_path / "trace.json"
    assert (
        convert_fedscale(
            tmp_path / "dev.pkl", out, behaviour_pickle=tmp_path / "beh.pkl"
        )
        == 2
    )
    p = read_trace(out)
    assert p[0].compute_s_per_sample == pytest.approx(0.04)
    assert p[0].download_bps == pytest.approx(8e6)
    assert p[0].windows == ((0.0, 100.0), (500.0, 800.0))
    assert p[0].period == 1000.0
    assert p[1].windows is None


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_fedscale_converter_refuses_code_in_pickles(tmp_path: Path) -> None:
    """A pickle that references a callable is refused, never run."""
    (tmp_path / "dev.pkl").write_bytes(pickle.dumps({1: _Evil()}))
    # print, by whatever module it is now (Ray, once imported, swaps in its own)
    with pytest.raises(ConfigurationError, match=r"references [\w.]*print; only plain"):
        convert_fedscale(tmp_path / "dev.pkl", tmp_path / "out.json")
