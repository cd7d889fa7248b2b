"""The contract between an agent class and the job runner: what a run sees, and what it yields."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agents.providers.base import ChatProvider, ChatRequest, Finished, TextDelta, ToolCall, Usage
from threads.content import text_of


@dataclass(frozen=True)
class Emit:
    """An event for the thread's log (``llm.chunk``, ``tool.started``, ``thought`` ...)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A complete assistant message; a run may reply more than once (e.g. between tool calls)."""

    content: list[dict[str, Any]]


@dataclass(frozen=True)
class TurnEnded:
    """A turn is complete: where an ``after_turn`` cancellation stops the run."""


@dataclass(frozen=True)
class Artifact:
    """Publish (or, by the same name, update) an artifact of the job: a file, citations, a task list.

    ``kind`` is one of file, citation, task_list, other. ``content`` is the file's bytes (None: no file; an
    update without content drops the earlier file). The runner stores it and appends ``artifact.updated``; a
    refused artifact (too large, malformed) becomes an ``agent.error`` event and the run goes on.
    """

    name: str
    kind: str = "other"
    data: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    media_type: str = ""


@dataclass(frozen=True)
class AwaitInput:
    """Pause the run until a person answers ``request``; the class's generator is not resumed afterwards.

    The runner stores ``request`` (shown to clients as the job's ``pending_action``) and ``state`` (whatever the
    class needs to carry on, JSON-serialisable) and releases the worker; nothing blocks while the job waits.
    When the client answers, the same job runs again from the start of ``execute`` with ``AgentRun.resume``
    set: the class picks up from ``state`` instead of starting over. ``request["type"]`` is one of
    ``RESPONSE_ACTIONS``.
    """

    request: dict[str, Any]
    state: dict[str, Any]


RESPONSE_ACTIONS: dict[str, frozenset[str]] = {
    # {"type": "tool_approval", "tool_call": {"id", "name", "arguments"}}: a tool that needs a person's approval.
    "tool_approval": frozenset({"approve", "reject", "tool_output"}),
    # {"type": "input", "prompt": "..."}: the agent asks the user for text.
    "input": frozenset({"text"}),
}
"""What a client may answer to each type of request."""


@dataclass(frozen=True)
class Resume:
    """A paused run coming back: the request it made, the client's answer, and the state it saved."""

    request: dict[str, Any]
    # {"action": "approve"} | {"action": "reject", "reason": "..."} | {"action": "tool_output", "output": ...}
    # | {"action": "text", "text": "..."}
    response: dict[str, Any]
    state: dict[str, Any]


AgentOutput = Emit | Reply | TurnEnded | AwaitInput | Artifact


@dataclass
class AgentRun:
    """Everything one run of an agent may use. Built by the job runner from fresh rows."""

    tenant_id: uuid.UUID
    thread_id: uuid.UUID
    job_id: uuid.UUID
    agent_id: uuid.UUID
    agent_slug: str
    agent_version: int
    model: str
    system_prompt: str
    tools: list[str]
    config: BaseModel
    # Earlier messages of the thread, oldest first: {"role", "content": [blocks]}.
    history: list[dict[str, Any]]
    # The message this job answers.
    input: list[dict[str, Any]]
    additional_instructions: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None
    # The runner's cancellation check for `immediate`; agents call it between steps.
    should_stop: Callable[[], bool] = lambda: False
    # The runner's publisher for tools (see agents.tools.ToolContext.publish_artifact): stores the artifact at
    # once and returns its summary, or raises ValueError saying why it was refused. None outside a job.
    publish_artifact: Callable[[Artifact], dict[str, Any]] | None = None
    # Set when the run continues after an ``AwaitInput`` was answered.
    resume: Resume | None = None


@dataclass
class TurnResult:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str = ""


def chat_messages(run: AgentRun, *, history_window: int | None = None) -> list[dict[str, Any]]:
    """The run as OpenAI chat messages: system prompt (and this job's extra instructions), history, input."""
    system = "\n\n".join(part for part in (run.system_prompt, run.additional_instructions) if part)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    history = run.history if history_window is None else run.history[-history_window:] if history_window else []
    for message in history:
        if message["role"] in ("user", "assistant") and (text := text_of(message["content"])):
            messages.append({"role": message["role"], "content": text})
    messages.append({"role": "user", "content": text_of(run.input)})
    return messages


def llm_turn(provider: ChatProvider, request: ChatRequest) -> Generator[AgentOutput, None, TurnResult]:
    """One model call, streamed as llm.started / llm.chunk / llm.completed; returns what the model said."""
    result = TurnResult()
    yield Emit("llm.started", {"model": request.model})
    parts: list[str] = []
    for item in provider.stream(request):
        if isinstance(item, TextDelta):
            parts.append(item.text)
            yield Emit("llm.chunk", {"delta": item.text})
        elif isinstance(item, ToolCall):
            result.tool_calls.append(item)
        elif isinstance(item, Usage):
            result.usage = item
        elif isinstance(item, Finished):
            result.finish_reason = item.reason
    result.text = "".join(parts)
    usage = result.usage or Usage(0, 0)
    yield Emit(
        "llm.completed",
        {
            "model": request.model,
            "finish_reason": result.finish_reason,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        },
    )
    return result
