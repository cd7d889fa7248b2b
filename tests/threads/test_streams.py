"""Replay then live: every event exactly once, in order, whatever the channel layer does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from tests.threads.factories import ThreadFactory
from threads import services
from threads.events import NewEvent, event_payload, thread_group
from threads.models import Event, Thread
from threads.streams import LIVE_MODE_EVENT, ThreadEventStream

pytestmark = pytest.mark.django_db(transaction=True)


def append(thread: Thread, count: int, *, job_id: Any = None, type_: str = "thought") -> list[dict[str, Any]]:
    events = services.events_append(
        thread=thread, events=[NewEvent(type_, {"n": i}, job_id=job_id) for i in range(count)]
    )
    return [event_payload(e) for e in events]


async def take(stream: AsyncIterator[dict[str, Any]], count: int, timeout: float = 5) -> list[dict[str, Any]]:
    taken = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            taken.append(event)
            if len(taken) == count:
                break
    return taken


def ids(events: list[dict[str, Any]]) -> list[Any]:
    return [e.get("id", e["type"]) for e in events]


def test_a_subscriber_gets_the_events_after_its_last_id_then_the_live_marker() -> None:
    thread = ThreadFactory.create()
    append(thread, 5)

    async def scenario() -> list[dict[str, Any]]:
        stream = ThreadEventStream(thread_id=thread.pk, after=2)
        return await take(stream.events(), 4)

    assert ids(asyncio.run(scenario())) == [3, 4, 5, "stream.mode"]


def test_live_events_already_replayed_are_dropped_and_new_ones_pass_once() -> None:
    thread = ThreadFactory.create()
    replayed = append(thread, 3)

    async def scenario() -> list[dict[str, Any]]:
        stream = ThreadEventStream(thread_id=thread.pk)
        events = stream.events()
        first = await take(events, 4)
        fresh = await database_sync_to_async(append)(thread, 2)
        stream.offer(replayed)  # the layer delivers what replay already sent
        stream.offer(fresh)
        stream.offer(fresh[1:])  # and a duplicate
        return first + await take(events, 2)

    assert ids(asyncio.run(scenario())) == [1, 2, 3, "stream.mode", 4, 5]


def test_a_gap_in_live_events_is_filled_from_the_database_before_going_on() -> None:
    thread = ThreadFactory.create()

    async def scenario() -> list[dict[str, Any]]:
        stream = ThreadEventStream(thread_id=thread.pk)
        events = stream.events()
        marker = await take(events, 1)
        written = await database_sync_to_async(append)(thread, 4)
        stream.offer([written[3]])  # events 1-3 were lost by the channel layer
        return marker + await take(events, 4)

    assert ids(asyncio.run(scenario())) == ["stream.mode", 1, 2, 3, 4]


def test_a_lost_last_event_arrives_after_a_quiet_spell() -> None:
    thread = ThreadFactory.create()

    async def scenario() -> list[dict[str, Any]]:
        stream = ThreadEventStream(thread_id=thread.pk, poll_seconds=0.1)
        events = stream.events()
        await take(events, 1)
        await database_sync_to_async(append)(thread, 2)  # published nowhere
        return await take(events, 2)

    assert ids(asyncio.run(scenario())) == [1, 2]


def test_a_slow_client_overflowing_its_buffer_catches_up_from_the_database() -> None:
    thread = ThreadFactory.create()

    async def scenario() -> list[dict[str, Any]]:
        stream = ThreadEventStream(thread_id=thread.pk, max_buffer=2)
        events = stream.events()
        await take(events, 1)
        for payload in await database_sync_to_async(append)(thread, 10):
            stream.offer([payload])  # the client reads nothing meanwhile
        return await take(events, 10)

    assert ids(asyncio.run(scenario())) == list(range(1, 11))


def test_a_job_stream_carries_only_its_job_and_ends_with_the_final_event() -> None:
    thread = ThreadFactory.create()
    ours, theirs = "7f0f4a4e-3a4c-4d55-9a1e-000000000001", "7f0f4a4e-3a4c-4d55-9a1e-000000000002"
    append(thread, 2, job_id=ours)
    append(thread, 2, job_id=theirs)
    append(thread, 1, job_id=ours, type_="job.succeeded")
    append(thread, 1, job_id=ours)  # after the end: never sent

    async def scenario() -> list[dict[str, Any]]:
        stream = ThreadEventStream(thread_id=thread.pk, job_id=uuid.UUID(ours))
        return [event async for event in stream.events()]

    events = asyncio.run(scenario())
    assert ids(events) == [1, 2, 5]
    assert events[-1]["type"] == "job.succeeded"
    assert LIVE_MODE_EVENT not in events


def test_events_published_on_commit_reach_a_stream_fed_by_the_channel_layer() -> None:
    thread = ThreadFactory.create()
    layer = get_channel_layer()

    async def scenario() -> list[dict[str, Any]]:
        channel = await layer.new_channel()
        await layer.group_add(thread_group(thread.pk), channel)
        stream = ThreadEventStream(thread_id=thread.pk)

        async def feed() -> None:
            while True:
                message = await layer.receive(channel)
                stream.offer(message["events"])

        feeder = asyncio.create_task(feed())
        try:
            events = stream.events()
            marker = await take(events, 1)
            await database_sync_to_async(append)(thread, 3)
            return marker + await take(events, 3)
        finally:
            feeder.cancel()

    assert ids(asyncio.run(scenario())) == ["stream.mode", 1, 2, 3]
    assert Event.objects.filter(thread=thread).count() == 3


def test_a_stream_holds_no_database_connection_between_its_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # An open stream must not pin a connection: a hundred SSE streams would hold a hundred PostgreSQL connections.
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]
        pytest.skip("the in-memory SQLite test database is never closed (closing it would destroy it)")
    # As in production, where connections are kept for reuse (the services suite sets DATABASE_CONN_MAX_AGE=0).
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    thread = ThreadFactory.create()
    append(thread, 2)

    @database_sync_to_async
    def connection_is_open() -> bool:
        return connection.connection is not None

    async def scenario() -> tuple[list[dict[str, Any]], bool]:
        stream = ThreadEventStream(thread_id=thread.pk)
        replayed = await take(stream.events(), 3)
        return replayed, await connection_is_open()

    replayed, still_open = asyncio.run(scenario())

    assert ids(replayed) == [1, 2, "stream.mode"]
    assert still_open is False
