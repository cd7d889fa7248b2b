"""The event contract: types, the wire shape, and publishing to the channel layer after commit."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from channels.layers import get_channel_layer

from threads.models import Event

logger = logging.getLogger(__name__)


class EventType(StrEnum):
    MESSAGE_CREATED = "message.created"
    JOB_QUEUED = "job.queued"
    JOB_STARTED = "job.started"
    JOB_REQUIRES_ACTION = "job.requires_action"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    JOB_EXPIRED = "job.expired"
    LLM_STARTED = "llm.started"
    LLM_CHUNK = "llm.chunk"
    LLM_COMPLETED = "llm.completed"
    THOUGHT = "thought"
    TOOL_STARTED = "tool.started"
    TOOL_COMPLETED = "tool.completed"
    RETRIEVAL_COMPLETED = "retrieval.completed"
    HANDOFF = "handoff"
    STATE_UPDATED = "state.updated"
    THREAD_UPDATED = "thread.updated"
    ARTIFACT_UPDATED = "artifact.updated"
    MEMORY_RETRIEVED = "memory.retrieved"
    MEMORY_STORED = "memory.stored"


JOB_FINAL_EVENTS = frozenset(
    {EventType.JOB_SUCCEEDED, EventType.JOB_FAILED, EventType.JOB_CANCELLED, EventType.JOB_EXPIRED}
)


@dataclass(frozen=True)
class NewEvent:
    """An event before it has its sequence number."""

    type: EventType | str
    data: dict[str, Any] = field(default_factory=dict)
    job_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None


def thread_group(thread_id: uuid.UUID | str) -> str:
    """The channel-layer group of one thread (the one place group names are made)."""
    return f"thread.{uuid.UUID(str(thread_id)).hex}"


def tenant_group(tenant_id: uuid.UUID | str) -> str:
    return f"tenant.{uuid.UUID(str(tenant_id)).hex}"


def event_payload(event: Event) -> dict[str, Any]:
    """An event as clients see it, on every stream and in the REST event log."""
    return {
        "id": event.sequence,
        "type": event.type,
        "thread": str(event.thread_id),
        "job": str(event.job_id) if event.job_id else None,
        "agent": str(event.agent_id) if event.agent_id else None,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }


class _Publisher:
    """Runs channel-layer sends on one long-lived event loop of this process.

    ``async_to_sync`` would make a fresh loop per call, and channels-redis keeps its connections per loop, so
    every publish would reconnect to Redis (about 5 ms). Sends are awaited one at a time, so events leave in
    the order they were committed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="aihub-event-publisher", daemon=True).start()
                self._loop = loop
            return self._loop

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send on the ASGI server's own loop instead: the in-memory channel layer (embedded) wakes its
        consumers only from the loop they wait on."""
        with self._lock:
            self._loop = loop

    def uses(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._loop is loop

    def run(self, coroutine: Coroutine[Any, Any, Any], *, timeout: float = 5.0) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop()).result(timeout=timeout)


_publisher = _Publisher()


def serve_events_from(loop: asyncio.AbstractEventLoop) -> None:
    """Publish on ``loop`` (the ASGI server's) when the channel layer is the in-memory one; else do nothing.

    The in-memory layer hands messages over through asyncio queues, which wake a waiting consumer only when
    the put happens on the consumer's own loop; publishes come from worker threads (the embedded Celery worker,
    sync views), so they must be run on the server's loop. Every stream calls this as it opens: it is cheap,
    and a test runner that starts a new loop per test moves the publisher along with it. channels-redis
    needs none of this: its consumers are woken by Redis, and the publisher keeps its own loop (and
    connections).
    """
    from channels.layers import InMemoryChannelLayer

    if isinstance(get_channel_layer(), InMemoryChannelLayer) and not _publisher.uses(loop):
        _publisher.use_loop(loop)


def publish(*, thread_id: uuid.UUID, tenant_id: uuid.UUID, payloads: list[dict[str, Any]]) -> None:
    """Send committed events to the thread's and the tenant's groups.

    Best effort by design: the database is the truth, and a subscriber that sees a gap reads it from there.
    """
    layer = get_channel_layer()
    if layer is None or not payloads:
        return

    async def send_both() -> None:
        # Each message names its group: a process's one channel (threads.fanout) receives for many groups.
        for group in (thread_group(thread_id), tenant_group(tenant_id)):
            await layer.group_send(group, {"type": "thread.events", "group": group, "events": payloads})

    try:
        _publisher.run(send_both())
    except Exception:  # a broken channel layer must not fail the write that already committed
        logger.warning("could not publish %d event(s) of thread %s", len(payloads), thread_id, exc_info=True)
