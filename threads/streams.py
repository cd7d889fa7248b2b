"""Replay, then live: the one algorithm behind every event stream (WebSocket and SSE).

A subscriber joins the thread's channel-layer group *before* reading the log, so nothing published meanwhile
is missed; it then sends the events after its last id from the database, a ``stream.mode`` marker, and the live
events — each exactly once and in order:

- a live event it has already sent (it arrived during replay) is dropped;
- a live event beyond the next expected id means the channel layer dropped or delayed something: the missing
  range is read from the database first;
- a full buffer (a slow client) is discarded and the stream catches up from the database;
- a quiet spell (``poll_seconds``) also checks the database, so a lost *last* event is still delivered;
- a read that fails (the pool is empty, the database is away) is tried again after a pause, and the stream
  stays open meanwhile.

The database is the truth; the channel layer only makes it fast. Transports feed live messages with
:meth:`ThreadEventStream.offer` and send what :meth:`ThreadEventStream.events` yields.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError

from aihub.db import in_memory_sqlite, release_connection
from threads.events import JOB_FINAL_EVENTS, event_payload
from threads.selectors import event_list

logger = logging.getLogger(__name__)

READ_RETRY_SECONDS = 0.5
READ_RETRY_MAX_SECONDS = 5.0
LIVE_MODE_EVENT: dict[str, Any] = {"type": "stream.mode", "data": {"mode": "live"}}
PAGE_SIZE = 500


def _read_page_sync(thread_id: uuid.UUID, after: int, up_to: int | None) -> list[dict[str, Any]]:
    events = event_list(thread=thread_id, after=after)  # type: ignore[arg-type]
    if up_to is not None:
        events = events.filter(sequence__lte=up_to)
    try:
        return [event_payload(event) for event in events[:PAGE_SIZE]]
    finally:
        # A stream lives for minutes or hours and reads the log only now and then (the replay, a gap, a quiet
        # spell): a connection kept between reads would stay with every open stream, and a hundred open streams
        # would hold a hundred connections.
        release_connection()


async def _read_page(thread_id: uuid.UUID, after: int, up_to: int | None) -> list[dict[str, Any]]:
    # Outside a request (a WebSocket consumer has no thread-sensitive context of its own) every thread-sensitive
    # call of the process shares one thread: a hundred sockets replaying after a Redis restart would read one
    # after the other. Reads go to the shared executor instead, side by side (but an in-memory SQLite database
    # is read on the caller's thread).
    read = database_sync_to_async(_read_page_sync, thread_sensitive=in_memory_sqlite())
    delay = READ_RETRY_SECONDS
    while True:
        try:
            return await read(thread_id, after, up_to)
        except DatabaseError as exc:
            # An empty pool (overload) or a database away for a moment: the stream waits and reads again, and
            # its keep-alives go on meanwhile. Raising would end the response mid-stream, and the client would
            # be left with a truncated body instead of the events it is owed.
            logger.warning("thread %s: the event log could not be read (%s); again in %.1f s", thread_id, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, READ_RETRY_MAX_SECONDS)


class ThreadEventStream:
    """The events of one thread after ``after``; with ``job_id``, only that job's, ending with its final event."""

    def __init__(
        self,
        *,
        thread_id: uuid.UUID,
        after: int = 0,
        job_id: uuid.UUID | None = None,
        max_buffer: int = 1000,
        poll_seconds: float = 5.0,
    ) -> None:
        self.thread_id = thread_id
        self.last_sent = after
        self.job_id = str(job_id) if job_id else None
        self.poll_seconds = poll_seconds
        self._live: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(maxsize=max_buffer)
        self._overflowed = False
        self.finished = False

    def offer(self, events: list[dict[str, Any]]) -> None:
        """Hand over live events from the channel layer; never blocks the caller."""
        try:
            self._live.put_nowait(events)
        except asyncio.QueueFull:
            # A slow client must not hold events in memory without bound: drop them and re-read the database.
            self._overflowed = True
            while not self._live.empty():
                self._live.get_nowait()

    async def _from_database(self, up_to: int | None = None) -> AsyncIterator[dict[str, Any]]:
        while not self.finished:
            page = await _read_page(self.thread_id, self.last_sent, up_to)
            for event in page:
                if self.finished:
                    return
                async for sent in self._send(event):
                    yield sent
            if len(page) < PAGE_SIZE:
                return

    def skip_to(self, after: int) -> None:
        """Go on from ``after`` if that is further than what was sent: events up to it are not sent."""
        self.last_sent = max(self.last_sent, after)

    async def _send(self, event: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if event["id"] <= self.last_sent:
            return  # skipped to beyond it (skip_to) while its page was on the way
        self.last_sent = event["id"]
        if self.job_id is None or event["job"] == self.job_id:
            yield event
            if self.job_id is not None and event["type"] in JOB_FINAL_EVENTS:
                self.finished = True

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        async for event in self._from_database():
            yield event
        if self.finished:
            return
        yield LIVE_MODE_EVENT
        while not self.finished:
            try:
                batch = await asyncio.wait_for(self._live.get(), timeout=self.poll_seconds)
            except TimeoutError:
                batch = []
            if self._overflowed or not batch:
                self._overflowed = False
                async for event in self._from_database():
                    yield event
                continue
            for live in sorted(batch, key=lambda e: e["id"]):
                if self.finished:
                    return
                if live["id"] <= self.last_sent:
                    continue
                if live["id"] > self.last_sent + 1:
                    async for event in self._from_database(up_to=live["id"] - 1):
                        yield event
                    if live["id"] <= self.last_sent or self.finished:
                        continue
                async for event in self._send(live):
                    yield event
