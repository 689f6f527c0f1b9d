"""The dashboard's SSE pieces: frames, Last-Event-ID, the replayed event log."""

from __future__ import annotations

import json
from contextlib import aclosing

import anyio
import pytest

from blazefl.dashboard import EventLog, frame, last_event_id
from blazefl.dashboard._sse import BadLastEventIDError

pytestmark = pytest.mark.anyio


def test_a_frame_is_id_event_and_the_events_jsonl_object() -> None:
    record = {"event": "round_finished", "round": 2, "summary": {"server_acc": 0.5}}
    text = frame(7, record).decode()
    assert text.startswith("id: 7\nevent: round_finished\ndata: ")
    assert text.endswith("\n\n")
    data = text.split("data: ", 1)[1].strip()
    assert json.loads(data) == record
    # Non-finite numbers cannot be JSON: they go as null, never as NaN.
    assert '"x":null' in frame(1, {"event": "e", "x": float("nan")}).decode()


@pytest.mark.parametrize(
    ("header", "expected"), [(None, 0), ("", 0), ("0", 0), ("12", 12), (" 3 ", 3)]
)
def test_last_event_id_reads_a_decimal_number(
    header: str | None, expected: int
) -> None:
    assert last_event_id(header) == expected


@pytest.mark.parametrize("header", ["-1", "²", "1e3", "0x10", "abc", "9" * 19])
def test_last_event_id_refuses_anything_else(header: str) -> None:
    with pytest.raises(BadLastEventIDError, match="Last-Event-ID must be a decimal"):
        last_event_id(header)


async def test_followers_replay_then_wait_and_end_when_closed() -> None:
    log = EventLog()
    for i in range(3):
        log.append({"event": "e", "i": i})
    seen: list[tuple[int, int]] = []

    async def reader(after: int) -> None:
        async with aclosing(log.follow(after)) as follow:
            async for item in follow:
                assert item is not None
                seen.append((item[0], item[1]["i"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, 1)
        await anyio.wait_all_tasks_blocked()
        log.append({"event": "e", "i": 3})
        await anyio.wait_all_tasks_blocked()
        log.close()
    assert seen == [(2, 1), (3, 2), (4, 3)]


async def test_an_idle_follower_gets_heartbeats() -> None:
    log = EventLog()
    items = []
    async with aclosing(log.follow(0, idle=0.01)) as follow:
        async for item in follow:
            items.append(item)
            if len(items) == 2:
                break
    assert items == [None, None]
