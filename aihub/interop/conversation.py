"""One turn of a conversation with an agent, as the front doors need it: submit, then wait or follow the events.

Submission is ``jobs.services.job_submit`` (the same write path as ``POST agents/{slug}/messages``); waiting is
``jobs.selectors.job_wait``; following is the job's SSE stream of ``threads.sse`` (replay then live, exactly
once and in order), read back as events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from django.http import StreamingHttpResponse

from agents.models import Agent
from jobs.models import Job
from jobs.services import BusyPolicy, job_submit
from threads import services as thread_services
from threads.content import text_of, validate_content
from threads.models import MessageRole, Thread
from threads.sse import KEEP_ALIVE, event_frames, job_stream_response

KEEP_ALIVE_EVENT: dict[str, Any] = {"type": "keep-alive"}
"""What :func:`job_events` yields for the stream's keep-alive comments, so a transport can pass them on."""


@dataclass(frozen=True)
class EarlierMessage:
    """A message that came before the one answered (OpenAI clients send the whole conversation every time)."""

    role: MessageRole
    content: list[dict[str, Any]]


def turn_submit(
    *,
    agent: Agent,
    user: Any,
    content: Any,
    thread: Thread | None = None,
    earlier: Sequence[EarlierMessage] = (),
    additional_instructions: str = "",
    context: dict[str, Any] | None = None,
    busy: BusyPolicy = "reject",
    new_thread_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    client_tools: Sequence[dict[str, Any]] = (),
    state: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> Job:
    """Store the message (on ``thread``, or a new thread) and start the agent's job for it.

    On a new thread the ``earlier`` messages are stored first, in order, so the agent sees them as history; on a
    continued thread they are ignored: the thread's own history is the truth. ``new_thread_id`` is the id a new
    thread gets (a protocol that names threads itself). One transaction: a refused job (disabled agent, busy
    thread) leaves no thread or message behind. ``job_id``, ``idempotency_key`` and ``client_tools`` are
    job_submit's. ``state`` (a protocol whose client sends the thread's state with each turn) replaces the
    thread's state when it differs, recorded as the new job's first ``state.updated`` so its followers see it;
    a retry (the earlier job returned) writes nothing.
    """
    blocks = validate_content(content)
    with transaction.atomic():
        if thread is None and (earlier or new_thread_id):
            thread = thread_services.thread_create(
                tenant=agent.tenant,
                created_by=user,
                title=text_of(blocks)[:80],
                agent_ids=[agent.id],
                thread_id=new_thread_id,
            )
            for message in earlier:
                thread_services.message_create(
                    thread=thread,
                    role=message.role,
                    content=message.content,
                    author=user if message.role == MessageRole.USER else None,
                    agent_id=agent.id if message.role == MessageRole.ASSISTANT else None,
                )
        job, created = job_submit(
            agent=agent,
            user=user,
            content=blocks,
            thread=thread,
            additional_instructions=additional_instructions,
            context=context,
            busy=busy,
            job_id=job_id,
            idempotency_key=idempotency_key,
            client_tools=client_tools,
            metadata=metadata,
        )
        if created and state is not None and state != job.thread.state:
            thread_services.thread_state_update(
                thread=job.thread, state=state, mode="replace", job_id=job.id, agent_id=agent.id
            )
    return job


def answer_text(job: Job) -> str:
    """The text of the job's final assistant message ('' when it has none)."""
    return text_of(job.output.get("content") or [])


def usage_counts(job: Job) -> tuple[int, int, int]:
    """(input, output, total) tokens the job used."""
    usage = job.usage or {}
    prompt = int(usage.get("input_tokens", 0))
    completion = int(usage.get("output_tokens", 0))
    return prompt, completion, int(usage.get("total_tokens", prompt + completion))


async def job_events(job: Job, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
    """The job's events from its first (or the first after sequence ``after``) to its final one (then the
    iterator ends), with :data:`KEEP_ALIVE_EVENT` while quiet. Leaving early does not stop the job."""
    # Reads the log to find where the job starts: ORM work, so off the event loop.
    response = await database_sync_to_async(job_stream_response)(job, after=after)
    if not isinstance(response, StreamingHttpResponse):
        return  # the job ended and has no events left to send (204)
    async for event in _events_of(response):
        yield event


async def job_events_after(*, job: Job, after: int) -> AsyncGenerator[dict[str, Any]]:
    """The job's events after the thread's event ``after``, replayed then live, up to its final one, with
    :data:`KEEP_ALIVE_EVENT` while quiet (the job stream's machinery). Leave early to stop sooner (a job that
    waits for an answer has no final event yet); leaving never stops the job."""
    # Closed explicitly when the caller leaves: the frames' own clean-up (leaving the thread's group) must not
    # wait for the garbage collector.
    async with aclosing(event_frames(thread_id=job.thread_id, after=after, job_id=job.pk)) as frames:
        async for event in _events_of(frames):
            yield event


async def _events_of(frames: AsyncIterable[Any]) -> AsyncIterator[dict[str, Any]]:
    async for frame in frames:
        text = frame.decode() if isinstance(frame, bytes) else str(frame)
        if text == KEEP_ALIVE:
            yield KEEP_ALIVE_EVENT
            continue
        for line in text.splitlines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))
