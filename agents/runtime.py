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


AgentOutput = Emit | Reply | TurnEnded


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
