"""Step 1 of the AG-UI door and its view: a ``RunAgentInput`` resolved to a job (a new turn, a retry, a
reconnect, or the answer to a waiting job) through the native API's services, then its events streamed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ag_ui.core import RunAgentInput, ToolMessage, UserMessage
from ag_ui.encoder import EventEncoder
from channels.db import database_sync_to_async
from django.db import IntegrityError
from django.http import HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from agents.selectors import agent_get
from aihub.api.base import AsyncTenantApiView, caller
from aihub.api.problems import Conflict, not_found
from aihub.db import db_call
from aihub.interop.agui.translation import (
    TOOL_REQUESTS,
    RunTranslator,
    as_text,
    encode_frames,
    interrupt_id_of,
    run_error,
)
from aihub.interop.conversation import KEEP_ALIVE_EVENT, EarlierMessage, job_events_after, turn_submit
from jobs.api.submission import idempotency_key
from jobs.models import Job, JobStatus
from jobs.services import job_respond
from threads.events import EventType
from threads.models import Event, MessageRole, Thread
from threads.selectors import event_list, message_list, thread_list
from threads.sse import KEEP_ALIVE, LAST_EVENT_ID_HEADER, JsonWhateverAccepted

logger = logging.getLogger(__name__)

THREAD_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-4c55-9a0e-2d8f7b1e4c93")
"""Names the aihub thread of an AG-UI thread id that is not a UUID (and the job of a run id), per tenant."""

INSTRUCTIONS_MAX_CHARS = 20_000
"""As for ``additional_instructions`` on the native routes."""


def parse_input(data: Any) -> RunAgentInput:
    """The request body as a RunAgentInput, or a 400 naming each invalid field."""
    if not isinstance(data, dict):
        raise exceptions.ValidationError({"body": ["A RunAgentInput JSON object."]})
    try:
        return RunAgentInput.model_validate(data)
    except PydanticValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "body"
            errors.setdefault(name, []).append(str(error["msg"]))
        raise exceptions.ValidationError(errors) from exc


def aihub_thread_id(*, tenant_id: uuid.UUID, agui_thread_id: str) -> uuid.UUID:
    """The aihub thread an AG-UI thread id names: the UUID itself, else one derived from it in this tenant."""
    try:
        return uuid.UUID(agui_thread_id)
    except ValueError:
        return uuid.uuid5(THREAD_NAMESPACE, f"{tenant_id}:{agui_thread_id}")


def run_job_id(*, thread_id: uuid.UUID, run_id: str) -> uuid.UUID:
    """The job of an AG-UI run on a thread: the same input sent again names the same job."""
    return uuid.uuid5(THREAD_NAMESPACE, f"run:{thread_id}:{run_id}")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(getattr(part, "text", "")) for part in content or [] if getattr(part, "type", "") == "text")


def _instructions(run: RunAgentInput) -> str:
    parts = [str(m.content) for m in run.messages if m.role in ("system", "developer") and m.content]
    if run.context:
        parts.append("Context:\n" + "\n".join(f"- {item.description}: {item.value}" for item in run.context))
    text = "\n\n".join(parts)
    if len(text) > INSTRUCTIONS_MAX_CHARS:
        raise exceptions.ValidationError(
            {"messages": [f"System and developer messages and context exceed {INSTRUCTIONS_MAX_CHARS} characters."]}
        )
    return text


def _earlier(run: RunAgentInput) -> list[EarlierMessage]:
    earlier = []
    for message in run.messages[:-1]:
        text = _content_text(message.content) if message.role in ("user", "assistant") else ""
        if text:
            role = MessageRole.USER if message.role == "user" else MessageRole.ASSISTANT
            earlier.append(EarlierMessage(role=role, content=[{"type": "text", "text": text}]))
    return earlier


def pending_answer(pending: dict[str, Any], run: RunAgentInput, *, job_id: uuid.UUID) -> dict[str, Any] | None:
    """The response to a waiting job that this run's input carries, or None when it carries none."""
    is_tool = pending.get("type") in TOOL_REQUESTS and isinstance(pending.get("tool_call"), dict)
    interrupt_id = interrupt_id_of(pending, job_id=job_id)
    for message in reversed(run.messages):
        if isinstance(message, ToolMessage) and is_tool and message.tool_call_id == interrupt_id:
            if message.error:
                return {"action": "reject", "reason": message.error}
            return {"action": "tool_output", "output": _content_text(message.content)}
    for entry in run.resume or []:
        if entry.interrupt_id != interrupt_id:
            continue
        if entry.status == "cancelled":
            return {"action": "reject"} if is_tool else {"action": "text", "text": ""}
        payload = entry.payload
        if isinstance(payload, dict) and "action" in payload:
            return dict(payload)
        if is_tool:
            return {"action": "tool_output", "output": payload}
        return {"action": "text", "text": as_text(payload)}
    return None


@dataclass(frozen=True)
class Plan:
    """What to stream: the job's events after ``after``, the ones up to ``skip_through`` already received."""

    job: Job
    after: int
    skip_through: int
    fresh: bool
    state: dict[str, Any]


def _run_start(job: Job, *, at_or_before: int | None = None) -> int:
    """The first event of the job's current run: its latest ``job.queued`` (the first, or a resume)."""
    queued = event_list(thread=job.thread, job_id=job.pk).filter(type=EventType.JOB_QUEUED)
    if at_or_before is not None:
        queued = queued.filter(sequence__lte=at_or_before)
    sequence = queued.order_by("-sequence").values_list("sequence", flat=True).first()
    if sequence is None:
        raise exceptions.ValidationError({LAST_EVENT_ID_HEADER: "It names no event of a run on this thread."})
    return int(sequence)


def _plan(job: Job, *, start: int, skip_through: int = 0) -> Plan:
    last_state = (
        Event.objects.filter(thread_id=job.thread_id, type=EventType.STATE_UPDATED, sequence__lt=start)
        .order_by("-sequence")
        .values_list("data", flat=True)
        .first()
    )
    state = (last_state or {}).get("state") or {}
    return Plan(job=job, after=start - 1, skip_through=skip_through, fresh=not skip_through, state=state)


def run_plan(
    *, principal: Any, user: Any, agent_slug: str, run: RunAgentInput, last_event_id: int | None, key: str | None
) -> Plan:
    """Resolve the run to a job — a reconnect, a retry, the answer to a waiting job, or a new turn — and say
    which of its events to stream. Every write is a service call of the native API."""
    agent = agent_get(principal=principal, slug=agent_slug)
    thread_pk = aihub_thread_id(tenant_id=principal.tenant.pk, agui_thread_id=run.thread_id)
    thread = thread_list(principal=principal).filter(pk=thread_pk).first()
    if thread is None and Thread.objects.filter(pk=thread_pk).exists():
        raise not_found("thread", run.thread_id)  # another tenant's, or one the caller may not see
    jobs = Job.objects.select_related("agent", "thread").filter(tenant=principal.tenant, agent=agent)
    if last_event_id is not None:
        event = (
            event_list(thread=thread, after=last_event_id - 1).filter(sequence=last_event_id).first()
            if thread
            else None
        )
        job = jobs.filter(pk=event.job_id, created_by=user).first() if event and event.job_id else None
        if job is None:
            raise exceptions.ValidationError({LAST_EVENT_ID_HEADER: "It names no event of a run on this thread."})
        return _plan(job, start=_run_start(job, at_or_before=last_event_id), skip_through=last_event_id)
    job_id = run_job_id(thread_id=thread_pk, run_id=run.run_id)
    if thread is not None:
        retried = jobs.filter(pk=job_id, created_by=user).first()
        if retried is not None:
            return _plan(retried, start=_first_event(retried))
        resumed = (
            event_list(thread=thread)
            .filter(type=EventType.JOB_QUEUED, data__response__agui_run_id=run.run_id)
            .order_by("-sequence")
            .first()
        )
        resumed_job = jobs.filter(pk=resumed.job_id).first() if resumed is not None and resumed.job_id else None
        if resumed is not None and resumed_job is not None:
            return _plan(resumed_job, start=resumed.sequence)
        waiting = jobs.filter(thread=thread, status=JobStatus.REQUIRES_ACTION).first()
        if waiting is not None and waiting.pending_action:
            if waiting.created_by_id != user.pk and not principal.can("admin", "jobs"):
                # As on POST jobs/{id}/respond: the thread is busy, and not with the caller's job.
                raise Conflict(f"The thread has a job ({waiting.id}) waiting for its creator's answer.")
            answer = pending_answer(waiting.pending_action, run, job_id=waiting.pk)
            if answer is None:
                raise Conflict(
                    f"The thread's job {waiting.id} waits for an answer ({waiting.pending_action.get('type')}): "
                    "send a tool message for its tool call, or a resume entry for its interrupt."
                )
            job = job_respond(job=waiting, user=user, response={**answer, "agui_run_id": run.run_id})
            return _plan(job, start=_run_start(job))
    last = run.messages[-1] if run.messages else None
    if not isinstance(last, UserMessage) or not _content_text(last.content).strip():
        raise exceptions.ValidationError({"messages": ["The last message must be a user message with text."]})
    if not isinstance(last.content, str) and any(part.type != "text" for part in last.content):
        raise exceptions.ValidationError({"messages": ["Only text parts are supported in a message's content."]})
    forwarded = run.forwarded_props
    try:
        job = turn_submit(
            agent=agent,
            user=user,
            content=_content_text(last.content),
            thread=thread,
            earlier=_earlier(run) if thread is None else (),
            additional_instructions=_instructions(run),
            context={"forwarded_props": forwarded} if forwarded is not None else None,
            new_thread_id=thread_pk,
            job_id=job_id,
            idempotency_key=key,
            client_tools=[tool.model_dump(include={"name", "description", "parameters"}) for tool in run.tools or []],
            state=run.state if isinstance(run.state, dict) and run.state else None,
        )
    except IntegrityError as exc:
        # Another request made this thread a moment ago, on its first use.
        raise Conflict("The thread was created by another request at the same time; send the run again.") from exc
    return _plan(job, start=_first_event(job))


def _first_event(job: Job) -> int:
    """The job's first event (its first job.queued): known from its submission, else read."""
    first = getattr(job, "first_event_id", None) or (
        event_list(thread=job.thread, job_id=job.pk).values_list("sequence", flat=True).first()
    )
    if not first:
        raise Conflict("The run has no events.")
    return int(first)


def _history(thread_id: uuid.UUID) -> list[dict[str, Any]]:
    return [dict(row) for row in message_list(thread=Thread(pk=thread_id)).values("id", "role", "content")]


async def run_frames(plan: Plan, *, run: RunAgentInput, run_input: dict[str, Any]) -> AsyncIterator[str]:
    """The response body: RUN_STARTED and the state snapshot (not on a resume), then the run's events
    translated, up to RUN_FINISHED or RUN_ERROR; keep-alive comments while quiet."""
    encoder = EventEncoder()
    translator = RunTranslator(thread_id=run.thread_id, run_id=run.run_id, state=plan.state)
    job = plan.job
    try:
        if plan.fresh:
            meta = {"aihub": {"thread": str(job.thread_id), "job": str(job.pk)}}
            yield encode_frames(encoder, translator.start(run_input, metadata=meta), event_id=None)
        async with aclosing(job_events_after(job=job, after=plan.after)) as events:
            async for event in events:
                if event is KEEP_ALIVE_EVENT:
                    yield KEEP_ALIVE
                    continue
                history: list[dict[str, Any]] = []
                if event["type"] in (EventType.JOB_SUCCEEDED, EventType.JOB_CANCELLED):
                    history = await database_sync_to_async(_history)(job.thread_id)
                translated = translator.translate(event, history=history)
                if event.get("id", 0) > plan.skip_through and translated:
                    yield encode_frames(encoder, translated, event_id=event["id"])
                if translator.finished:
                    return
    except Exception:
        logger.exception("AG-UI run %s (job %s): the stream failed", run.run_id, job.pk)
        problem = {
            "type": "urn:aihub:problem:stream-failed",
            "title": "Stream failed",
            "status": 500,
            "detail": f"The server failed while streaming this run; the job ({job.pk}) goes on. Send the run again "
            "with Last-Event-ID to resume.",
        }
        yield encode_frames(encoder, [run_error(problem)], event_id=None)


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get(LAST_EVENT_ID_HEADER) or ""
    if raw and not raw.isdigit():
        raise exceptions.ValidationError({LAST_EVENT_ID_HEADER: "A non-negative integer."})
    return int(raw) or None if raw else None  # 0: nothing received yet, the run from its start


@extend_schema(exclude=True)  # AG-UI's wire format is described by the protocol (https://docs.ag-ui.com)
class AguiRunView(AsyncTenantApiView):
    """``POST /ag-ui/{tenant}/{agent}``: one AG-UI run of the agent, streamed."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonWhateverAccepted

    async def post(self, request: Request, tenant: str, agent: str) -> HttpResponseBase:
        run = parse_input(request.data)
        plan = await db_call(
            run_plan,
            principal=self.principal,
            user=caller(request),
            agent_slug=agent,
            run=run,
            last_event_id=_last_event_id(request),
            key=idempotency_key(request),
        )
        body = request.data if isinstance(request.data, dict) else {}
        response = StreamingHttpResponse(
            run_frames(plan, run=run, run_input=body), content_type=EventEncoder().get_content_type()
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["X-Aihub-Thread"] = str(plan.job.thread_id)
        response["X-Aihub-Job"] = str(plan.job.pk)
        return response
