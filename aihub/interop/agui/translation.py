"""Step 4 of the AG-UI door: aihub events to AG-UI events, a pure function of the events (no I/O).

:class:`RunTranslator` keeps what pairing needs, so that the same events always give the same AG-UI events: a
resumed stream feeds it the run's earlier events again and drops their output.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
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
    UserMessage,
)
from ag_ui.encoder import EventEncoder

from threads.content import text_of
from threads.events import EventType
from threads.models import MessageRole

TOOL_REQUESTS = frozenset({"client_tool", "tool_approval"})


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


def as_text(value: Any) -> str:
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
        text = as_text(data.get("text") or data.get("delta") or data.get("content") or "")
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
        content = as_text(data.get("output"))
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
        return [*self._ended(()), run_error(problem, usage=self._usage_list())]

    def _on_job_expired(self, event: dict[str, Any], data: dict[str, Any], history: Any) -> list[BaseEvent]:
        problem = {
            "type": "urn:aihub:problem:job-expired",
            "title": "Job expired",
            "status": 410,
            "detail": "The job expired before it could finish.",
        }
        return [*self._ended(()), run_error(problem)]


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


def run_error(problem: dict[str, Any], *, usage: list[TokenUsage] | None = None) -> RunErrorEvent:
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


def interrupt_id_of(pending: dict[str, Any], *, job_id: uuid.UUID | str) -> str:
    """The id of the interrupt a waiting job's request is: its tool call's id, else one naming the job."""
    call = pending.get("tool_call") if pending.get("type") in TOOL_REQUESTS else None
    return str(call.get("id")) if isinstance(call, dict) else f"job-{job_id}"
