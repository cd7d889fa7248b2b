"""One turn of a conversation with an agent, as the front doors need it: submit, then wait or follow the events.

Submission is ``jobs.services.job_submit`` (the same write path as ``POST agents/{slug}/messages``); waiting is
``jobs.selectors.job_wait``; following is the job's SSE stream of ``threads.sse`` (replay then live, exactly
once and in order), read back as events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from django.http import StreamingHttpResponse

from agents.models import Agent
from jobs.models import Job
from jobs.services import job_submit
from threads import services as thread_services
from threads.content import text_of, validate_content
from threads.models import MessageRole, Thread
from threads.sse import KEEP_ALIVE, job_stream_response

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
    metadata: dict[str, str] | None = None,
) -> Job:
    """Store the message (on ``thread``, or a new thread) and start the agent's job for it.

    On a new thread the ``earlier`` messages are stored first, in order, so the agent sees them as history; on a
    continued thread they are ignored: the thread's own history is the truth. One transaction: a refused job
    (disabled agent, busy thread) leaves no thread or message behind.
    """
    blocks = validate_content(content)
    with transaction.atomic():
        if thread is None and earlier:
            thread = thread_services.thread_create(
                tenant=agent.tenant, created_by=user, title=text_of(blocks)[:80], agent_ids=[agent.id]
            )
            for message in earlier:
                thread_services.message_create(
                    thread=thread,
                    role=message.role,
                    content=message.content,
                    author=user if message.role == MessageRole.USER else None,
                    agent_id=agent.id if message.role == MessageRole.ASSISTANT else None,
                )
        job, _ = job_submit(
            agent=agent,
            user=user,
            content=blocks,
            thread=thread,
            additional_instructions=additional_instructions,
            context=context,
            metadata=metadata,
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


async def job_events(job: Job) -> AsyncIterator[dict[str, Any]]:
    """The job's events from its first to its final one (then the iterator ends), with :data:`KEEP_ALIVE_EVENT`
    while quiet. Leaving early does not stop the job."""
    # Reads the log to find where the job starts: ORM work, so off the event loop.
    response = await database_sync_to_async(job_stream_response)(job)
    if not isinstance(response, StreamingHttpResponse):
        return  # the job ended and has no events left to send (204)
    async for frame in response:
        text = frame.decode() if isinstance(frame, bytes) else str(frame)
        if text == KEEP_ALIVE:
            yield KEEP_ALIVE_EVENT
            continue
        for line in text.splitlines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))
