"""The AG-UI door: ``POST /ag-ui/{tenant}/{agent}`` runs an agent and answers with AG-UI events over SSE.

AG-UI (the Agent-User Interaction protocol, https://docs.ag-ui.com) sends a ``RunAgentInput``; the answer is a
``text/event-stream`` of AG-UI events. This module is an adapter at the two ends of aihub's flow only:

- step 1: the input becomes the same service call as ``POST agents/{slug}/messages``
  (:func:`aihub.interop.conversation.turn_submit`): the last message (from the user) starts a job of the agent;
  the AG-UI thread id names an aihub thread of the caller's tenant, created on first use (an id that is a UUID
  is the thread's own id, any other string is mapped to one, per tenant); on a new thread the earlier messages
  are stored as its history; ``system``/``developer`` messages and ``context`` become the job's additional
  instructions, ``forwardedProps`` its ``context`` (tools see it, the model does not), a non-empty ``state``
  replaces the thread's state, ``tools`` are client tools the model may call. A run is a job: its id is derived
  from the thread and ``runId``, so the same input sent again is the same run (nothing submitted twice).
- step 4: the job's events — the thread's event log, replayed then live, through the machinery of the job
  stream — are translated by :class:`RunTranslator`, a pure function of the events, into AG-UI events,
  encoded by ``ag_ui.encoder.EventEncoder``.

A call to a client tool pauses the job in ``requires_action``; the run then ends with the tool call
(``TOOL_CALL_START/ARGS/END``) and ``RUN_FINISHED`` with an ``interrupt`` outcome. The next run on the thread
answers it — with a ``tool`` message for that ``toolCallId`` in its messages, or a resume entry for the
interrupt — which answers the waiting job through ``jobs.services.job_respond``; the same job carries on and
that run streams the rest of it. Approval-gated tools and input requests are interrupts too, answered by resume
entries (``payload``: an aihub response such as ``{"action": "approve"}``).

Each frame made from an aihub event carries that event's id (``id:``): sending the same input again with
``Last-Event-ID`` resumes the run after it, every event exactly once. Authentication, tenant rules, throttles,
busy threads, Idempotency-Key and usage limits are the native API's; errors before the stream are problem
details, errors after it has started a ``RUN_ERROR`` event.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from ag_ui.core import PROTOCOL_VERSION as AGUI_PROTOCOL_VERSION
from ag_ui.core import (
    AssistantMessage,
    BaseEvent,
    CustomEvent,
    Interrupt,
    MessagesSnapshotEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    ToolMessage,
    UserMessage,
)
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
from aihub.interop.conversation import KEEP_ALIVE_EVENT, EarlierMessage, job_events_after, turn_submit
from jobs.api.submission import idempotency_key
from jobs.models import Job, JobStatus
from jobs.services import job_respond
from threads.content import text_of
from threads.events import EventType
from threads.models import Event, MessageRole, Thread
from threads.selectors import event_list, message_list, thread_list
from threads.sse import KEEP_ALIVE, LAST_EVENT_ID_HEADER, JsonWhateverAccepted

logger = logging.getLogger(__name__)

THREAD_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-4c55-9a0e-2d8f7b1e4c93")
"""Names the aihub thread of an AG-UI thread id that is not a UUID (and the job of a run id), per tenant."""

INSTRUCTIONS_MAX_CHARS = 20_000
"""As for ``additional_instructions`` on the native routes."""

TOOL_REQUESTS = frozenset({"client_tool", "tool_approval"})


# --- Step 4: aihub events to AG-UI events (pure) -------------------------------------------------------------


def state_patch(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON Patch (RFC 6902) from one state to the next, key by key (aihub's state is a flat object)."""

    def pointer(key: str) -> str:
        return "/" + key.replace("~", "~0").replace("/", "~1")

    ops: list[dict[str, Any]] = [{"op": "remove", "path": pointer(k)} for k in sorted(before.keys() - after.keys())]
    for key in sorted(after):
        if key not in before:
            ops.append({"op": "add", "path": pointer(key), "value": after[key]})
        elif before[key] != after[key]:
            ops.append({"op": "replace", "path": pointer(key), "value": after[key]})
    return ops


def agui_messages(messages: Sequence[dict[str, Any]]) -> list[UserMessage | AssistantMessage]:
    """A thread's stored messages (``{"id", "role", "content"}``) as AG-UI messages, for MESSAGES_SNAPSHOT."""
    converted: list[UserMessage | AssistantMessage] = []
    for message in messages:
        text = text_of(message["content"])
        if message["role"] == MessageRole.USER:
            converted.append(UserMessage(id=str(message["id"]), content=text))
        elif message["role"] == MessageRole.ASSISTANT:
            converted.append(AssistantMessage(id=str(message["id"]), content=text))
    return converted


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class RunTranslator:
    """Translates one run's aihub events, in order, into AG-UI events; the same events give the same output.

    It keeps what pairing needs (the open text message and step, the tool calls started, the state so far), so
    a resumed stream feeds it the run's earlier events again and drops what they give. ``finished`` is set by
    the event that ends the run: the job's final event, or its pause (``job.requires_action``).
    """

    thread_id: str
    run_id: str
    state: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    _turn: str | None = None  # the message id of the current model turn
    _turns: int = 0
    _text: str | None = None  # the open text message
    _step: str | None = None  # the open step
    _streamed: bool = False  # the current model turn streamed text (so its reply is not sent again)
    _started_calls: set[str] = field(default_factory=set)
    _usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})

    def translate(self, event: dict[str, Any], *, history: Sequence[dict[str, Any]] = ()) -> list[BaseEvent]:
        """The AG-UI events of one aihub event; ``history`` (the thread's messages) goes into the
        MESSAGES_SNAPSHOT that precedes a successful or cancelled end."""
        if self.finished:
            return []
        kind, data = event["type"], event.get("data") or {}
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is not None:
            return list(handler(event, data, history))
        if kind in _CUSTOM_EVENTS:
            return [CustomEvent(name=f"aihub.{kind}", value=data)]
        return []  # job.queued, job.started, stream.mode: nothing a client of the run needs

    def start(
        self, run_input: dict[str, Any] | None = None, *, metadata: dict[str, Any] | None = None
    ) -> list[BaseEvent]:
        """RUN_STARTED and the state the run starts from."""
        started = RunStartedEvent(
            thread_id=self.thread_id,
            run_id=self.run_id,
            protocol_version=AGUI_PROTOCOL_VERSION,
            input=RunAgentInput.model_validate(run_input) if run_input is not None else None,
            metadata=metadata,
        )
        return [started, StateSnapshotEvent(snapshot=dict(self.state))]

    def _close(self) -> list[BaseEvent]:
        closed: list[BaseEvent] = []
        if self._text is not None:
            closed.append(TextMessageEndEvent(message_id=self._text))
            self._text = None
        if self._step is not None:
            closed.append(StepFinishedEvent(step_name=self._step))
            self._step = None
        return closed

    def _tool_call(self, call: dict[str, Any]) -> list[BaseEvent]:
        call_id = str(call.get("id") or "")
        self._started_calls.add(call_id)
        return [
            ToolCallStartEvent(
                tool_call_id=call_id, tool_call_name=str(call.get("name") or ""), parent_message_id=self._turn
            ),
            ToolCallArgsEvent(tool_call_id=call_id, delta=json.dumps(call.get("arguments") or {})),
            ToolCallEndEvent(tool_call_id=call_id),
        ]

    def _usage_list(self) -> list[TokenUsage] | None:
        if not any(self._usage.values()):
            return None
        prompt, completion = self._usage["input_tokens"], self._usage["output_tokens"]
        return [TokenUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)]

    def _on_llm_started(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        closed = self._close()
        self._turns += 1
        self._turn, self._streamed = f"{event['job']}-{event['id']}", False
        self._step = f"model turn {self._turns}"
        return [*closed, StepStartedEvent(step_name=self._step)]

    def _on_llm_chunk(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        delta = str(data.get("delta") or "")
        if not delta:
            return []
        opened: list[BaseEvent] = []
        if self._text is None:
            self._text = self._turn or f"{event['job']}-{event['id']}"
            opened.append(TextMessageStartEvent(message_id=self._text, role="assistant"))
        self._streamed = True
        return [*opened, TextMessageContentEvent(message_id=self._text, delta=delta)]

    def _on_llm_completed(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        for key in self._usage:
            self._usage[key] += int((data.get("usage") or {}).get(key, 0))
        return self._close()

    def _on_thought(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        text = _as_text(data.get("text") or data.get("delta") or data.get("content") or "")
        if not text:
            return []
        message_id = f"{event['job']}-{event['id']}-reasoning"
        return [
            ReasoningStartEvent(message_id=message_id),
            ReasoningMessageStartEvent(message_id=message_id, role="reasoning"),
            ReasoningMessageContentEvent(message_id=message_id, delta=text),
            ReasoningMessageEndEvent(message_id=message_id),
            ReasoningEndEvent(message_id=message_id),
        ]

    def _on_tool_started(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        return [*self._close(), *self._tool_call(data)]

    def _on_tool_completed(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        call_id = str(data.get("id") or "")
        # Only for a call this run started: a client tool's output came from the client itself.
        if call_id not in self._started_calls:
            return []
        content = _as_text(data.get("output"))
        return [ToolCallResultEvent(message_id=f"{call_id}-result", tool_call_id=call_id, content=content)]

    def _on_state_updated(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        new_state = data.get("state") or {}
        ops = state_patch(self.state, new_state)
        self.state = dict(new_state)
        return [StateDeltaEvent(delta=ops)] if ops else []  # type: ignore[arg-type]  # pydantic parses the ops

    def _on_message_created(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        if data.get("role") != MessageRole.ASSISTANT or self._streamed:
            return []  # the user's own message, or a reply the client has seen streamed
        text = text_of(data.get("content") or [])
        if not text:
            return []
        message_id = str(data.get("id"))
        return [
            *self._close(),
            TextMessageStartEvent(message_id=message_id, role="assistant"),
            TextMessageContentEvent(message_id=message_id, delta=text),
            TextMessageEndEvent(message_id=message_id),
        ]

    def _on_job_requires_action(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        pending = data.get("pending_action") or {}
        kind = str(pending.get("type") or "input")
        out = self._close()
        call = pending.get("tool_call") if kind in TOOL_REQUESTS else None
        if isinstance(call, dict):
            if str(call.get("id")) not in self._started_calls:
                out += self._tool_call(call)
            interrupt = Interrupt(
                id=str(call.get("id")),
                reason=kind,
                tool_call_id=str(call.get("id")),
                message=(
                    f"Run the tool {call.get('name')} and send its result."
                    if kind == "client_tool"
                    else f"Approve or reject the call of {call.get('name')}."
                ),
                metadata={"aihub": {"job": event["job"]}},
            )
        else:
            interrupt = Interrupt(
                id=interrupt_id_of(pending, job_id=event["job"]),
                reason=kind,
                message=str(pending.get("prompt") or ""),
                response_schema={"type": "string"},
                metadata={"aihub": {"job": event["job"]}},
            )
        self.finished = True
        outcome = RunFinishedInterruptOutcome(interrupts=[interrupt])
        return [
            *out,
            RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, outcome=outcome, usage=self._usage_list()),
        ]

    def _ended(self, history: Sequence[dict[str, Any]]) -> list[BaseEvent]:
        self.finished = True
        out = self._close()
        if history:
            out.append(MessagesSnapshotEvent(messages=agui_messages(history)))  # type: ignore[arg-type]
        return out

    def _on_job_succeeded(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        output = data.get("output") or {}
        result = {"job": event["job"], "message": output.get("message")}
        finished = RunFinishedEvent(
            thread_id=self.thread_id, run_id=self.run_id, result=result, usage=self._usage_list()
        )
        return [*self._ended(history), finished]

    def _on_job_cancelled(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        finished = RunFinishedEvent(
            thread_id=self.thread_id,
            run_id=self.run_id,
            outcome=RunFinishedCancelledOutcome(),
            usage=self._usage_list(),
        )
        return [*self._ended(history), finished]

    def _on_job_failed(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        problem = data.get("error") or {"title": "Job failed", "detail": "The job failed.", "status": 500}
        return [*self._ended(()), _run_error(problem, usage=self._usage_list())]

    def _on_job_expired(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        problem = {
            "type": "urn:aihub:problem:job-expired",
            "title": "Job expired",
            "status": 410,
            "detail": "The job expired before it could finish.",
        }
        return [*self._ended(()), _run_error(problem)]


_CUSTOM_EVENTS = frozenset(
    {
        EventType.ARTIFACT_UPDATED,
        EventType.RETRIEVAL_COMPLETED,
        EventType.MEMORY_RETRIEVED,
        EventType.MEMORY_STORED,
        EventType.HANDOFF,
        "agent.error",
    }
)
"""aihub events AG-UI has no event for: passed on as CUSTOM events named ``aihub.<type>``."""


def _run_error(problem: dict[str, Any], *, usage: list[TokenUsage] | None = None) -> RunErrorEvent:
    """RUN_ERROR with the problem details (RFC 7807) in its metadata; ``code`` is the problem's type."""
    message = str(problem.get("detail") or problem.get("title") or "The run failed.")
    code = str(problem.get("type") or "") or None
    return RunErrorEvent(message=message, code=code, usage=usage, metadata={"problem": problem})


def encode_frames(encoder: EventEncoder, events: Sequence[BaseEvent], *, event_id: int | None) -> str:
    """SSE frames of ``events`` (the encoder's own), the last with ``id: event_id``: the aihub event they came
    from, which ``Last-Event-ID`` resumes after once every one of them was received."""
    frames = [encoder.encode(event) for event in events]
    if frames and event_id is not None:
        frames[-1] = f"id: {event_id}\n{frames[-1]}"
    return "".join(frames)


# --- Step 1: RunAgentInput to the service call ----------------------------------------------------------------


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


def interrupt_id_of(pending: dict[str, Any], *, job_id: uuid.UUID | str) -> str:
    """The id of the interrupt a waiting job's request is: its tool call's id, else one naming the job."""
    call = pending.get("tool_call") if pending.get("type") in TOOL_REQUESTS else None
    return str(call.get("id")) if isinstance(call, dict) else f"job-{job_id}"


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
        return {"action": "text", "text": _as_text(payload)}
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
        yield encode_frames(encoder, [_run_error(problem)], event_id=None)


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
