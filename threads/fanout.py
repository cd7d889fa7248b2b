"""One channel-layer subscription per server process, shared by every stream and waiter in it.

Each event loop (an ASGI server process has one) keeps a single channel on the layer and joins a thread's or a
tenant's group once, however many local listeners follow it; one reader task receives the group messages
(``threads.events.publish`` names the group in each) and hands them to the listeners in memory. Why:

- Fan-out costs one message per process, not one per subscriber, and never waits on a subscriber: a listener
  is a plain callable that only enqueues (``ThreadEventStream.offer``).
- The reader is never cancelled. channels-redis gives a message to whichever receive is blocked in Redis for
  the process; a receive cancelled there (a stream that ended, a waiter that timed out) left a message waiting
  unread until the next Redis round (about 5 s), which was the streams' intermittent 5 s stall.
- When the layer fails (Redis restarts), the reader says so once in the log, tells every listener to re-read
  the database (the empty batch ``[]``) every ``DEGRADED_RECHECK_SECONDS`` until the layer is back, then joins
  every group again (a restarted Redis has forgotten them) and has everyone re-read once more, so nothing is
  missed in between. Streams stay open meanwhile: no connection is closed for it.

The database stays the truth: a listener treats the layer as a wake-up and reads what it lacks from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from threads.events import serve_events_from

logger = logging.getLogger(__name__)

Listener = Callable[[list[dict[str, Any]]], None]
"""Called with a group's new events, or with ``[]``: re-read the database (something may have been missed)."""

DEGRADED_RECHECK_SECONDS = 1.0
RETRY_MAX_SECONDS = 5.0
REJOIN_SECONDS = 3600.0
"""How often every group is joined again: channels-redis forgets a membership after a day (``group_expiry``)."""


class EventHub:
    """The listeners of one event loop, by group, and the one channel that receives for all of them."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.listeners: dict[str, set[Listener]] = defaultdict(set)
        self.channel: str | None = None
        self.degraded = False
        self._tasks: list[asyncio.Task[None]] = []

    async def listen(self, group: str, listener: Listener) -> None:
        """Deliver ``group``'s messages to ``listener`` from now on (join before reading the log)."""
        if self.layer is None:
            return
        first = not self.listeners[group]
        self.listeners[group].add(listener)
        if first:
            await self._start()
            try:
                await self.layer.group_add(group, self.channel)
            except Exception as exc:  # the reader notices the outage too, and joins again once it is over
                self._outage(exc)

    async def unlisten(self, group: str, listener: Listener) -> None:
        listeners = self.listeners.get(group)
        if not listeners:
            return
        listeners.discard(listener)
        if not listeners:
            del self.listeners[group]
            if self.channel is not None and self.layer is not None:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(group, self.channel)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _start(self) -> None:
        if self.channel is None:
            assert self.layer is not None
            self.channel = await self.layer.new_channel()
            self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._rejoin_periodically())]

    async def _read(self) -> None:
        assert self.layer is not None and self.channel is not None
        retry = DEGRADED_RECHECK_SECONDS
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _being_cancelled():
                    # The receive turned our cancellation into an error of its own (a connection closed under
                    # it): taken for an outage, the reader would retry for ever and its loop could never close.
                    raise asyncio.CancelledError from exc
                self._outage(exc)
                self._resync_all()
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)
                if await self._join_all():
                    retry = DEGRADED_RECHECK_SECONDS
                continue
            if self.degraded:
                # A message came through without an error first (an in-memory layer, a short blip).
                await self._join_all()
            self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != "thread.events":
            return
        for listener in tuple(self.listeners.get(message.get("group", ""), ())):
            listener(message["events"])

    def _outage(self, exc: BaseException) -> None:
        if not self.degraded:
            self.degraded = True
            logger.warning(
                "channel layer unavailable (%s: %s): streams and waiters re-read the database every %s s until it "
                "is back",
                type(exc).__name__,
                exc,
                DEGRADED_RECHECK_SECONDS,
            )

    async def _join_all(self) -> bool:
        """Join every group with listeners again; True once that worked (the layer is back)."""
        assert self.layer is not None and self.channel is not None
        try:
            for group in tuple(self.listeners):
                await self.layer.group_add(group, self.channel)
        except Exception:
            self._resync_all()
            return False
        if self.degraded:
            self.degraded = False
            logger.warning("channel layer is back: %d group(s) joined again", len(self.listeners))
            # Whatever was published while the groups were gone is in the database.
            self._resync_all()
        return True

    def _resync_all(self) -> None:
        for listeners in tuple(self.listeners.values()):
            for listener in tuple(listeners):
                listener([])

    async def _rejoin_periodically(self) -> None:
        while True:
            await asyncio.sleep(DEGRADED_RECHECK_SECONDS if self.degraded else REJOIN_SECONDS)
            if self.degraded:
                # The reader may sit in a receive that hangs rather than fails while Redis is gone; keep
                # everyone re-reading the database until the layer is back.
                self._resync_all()
            else:
                await self._join_all()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventHub] = weakref.WeakKeyDictionary()


def event_hub() -> EventHub:
    """The hub of the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    serve_events_from(loop)
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not get_channel_layer():
        if hub is not None:
            hub.close()  # the layer was replaced (tests override CHANNEL_LAYERS)
        hub = _hubs[loop] = EventHub()
    return hub
