"""WebSocket streams on a real daphne (`make run`'s embedded server), with a real WebSocket client library.

A client that stops reading must not slow the job or the other clients; when it reads again it gets every event
exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.servers import http_json
from threads.events import JOB_FINAL_EVENTS

WORDS = [f"w{n}" for n in range(60)]  # the demo echo agent streams a word per 50 ms: 3 seconds


async def open_thread_socket(base: str, token: str, thread: str, **options: Any) -> ClientConnection:
    url = f"{base.replace('http://', 'ws://')}/ws/v1/demo/threads/{thread}/?token={token}&last_event_id=0"
    return await connect(url, origin=Origin(base), **options)


async def read_until_final(socket: ClientConnection) -> tuple[list[dict[str, Any]], float]:
    """Every event frame up to the job's final one, and when that one arrived."""
    events: list[dict[str, Any]] = []
    while True:
        frame = json.loads(await socket.recv())
        if "id" in frame:
            events.append(frame)
            if frame["type"] in JOB_FINAL_EVENTS:
                return events, time.monotonic()


def test_a_client_that_stops_reading_slows_neither_the_job_nor_the_others_and_catches_up_after(
    embedded_server: tuple[str, str],
) -> None:
    base, token = embedded_server
    status, thread = http_json(f"{base}/api/v1/demo/threads/", body={"title": "slow reader"}, token=token)
    assert status == 201, thread

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], float, float]:
        # max_queue=1: the slow client's library stops reading from TCP after one frame, as a stalled app would.
        slow = await open_thread_socket(base, token, thread["id"], max_queue=1)
        fast = await open_thread_socket(base, token, thread["id"])
        for socket in (slow, fast):
            assert json.loads(await socket.recv())["type"] == "stream.mode"
        started = time.monotonic()
        status, job = await asyncio.to_thread(
            http_json,
            f"{base}/api/v1/demo/agents/echo/messages",
            body={"content": " ".join(WORDS), "thread": thread["id"]},
            token=token,
        )
        assert status == 202, job
        fast_events, fast_done = await asyncio.wait_for(read_until_final(fast), timeout=30)
        await asyncio.sleep(1)  # the slow client goes on not reading for a while after the job's end
        slow_events, _ = await asyncio.wait_for(read_until_final(slow), timeout=30)
        await asyncio.gather(slow.close(), fast.close())
        return fast_events, slow_events, started, fast_done

    fast_events, slow_events, started, fast_done = asyncio.run(scenario())

    status, log = http_json(f"{base}/api/v1/demo/threads/{thread['id']}/events/?limit=200", token=token)
    assert status == 200
    logged = [(e["id"], e["type"]) for e in log["items"]]
    assert logged[-1][1] == "job.succeeded"
    assert [(e["id"], e["type"]) for e in fast_events] == logged
    assert [(e["id"], e["type"]) for e in slow_events] == logged
    # 60 words at 50 ms are 3 s of work: the fast client saw the end as it happened, not after the slow one.
    assert fast_done - started < 3 + 3, fast_done - started
