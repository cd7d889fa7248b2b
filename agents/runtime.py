"""The contract between an agent class and the job runner: what a run sees, and what it yields."""

from __future__ import annotations

import base64
import html
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agents.providers.base import ChatProvider, ChatRequest, ClientConfig, Finished, TextDelta, ToolCall, Usage
from aihub import tracing
from aihub.conf import aihub_settings
from threads.content import file_ids_of, text_of
from threads.models import File
from threads.selectors import files_by_id


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
    # {"type": "client_tool", "tool_call": {"id", "name", "arguments"}}: the model called a tool the client
    # declared (AgentRun.client_tools); the client runs it and answers with its output.
    "client_tool": frozenset({"tool_output", "reject"}),
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
    # Earlier messages of the thread, oldest first: {"role", "content": [blocks]}; for a stateless turn the
    # client's chat_history instead (which may also carry "agent", "caller_agent" and "timestamp").
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
    # The request's own model credentials (client_config): model calls go there instead of to the operator's
    # provider (agents.providers.provider_for). Never stored; see jobs.credentials.
    client_config: ClientConfig | None = None
    # Tools the client declared for this job (agents.tools.client_tools_validate): offered to the model by
    # classes that call tools; a call to one pauses the run (``client_tool``) for the client to answer.
    client_tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TurnResult:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str = ""


VISION_HELP = (
    "The agent's model accepts images: attached images are sent to it (as base64 data URLs). Off, the model is "
    "told that an image was attached but not shown."
)
"""A config field, not a property of the provider: one endpoint serves models with and without vision."""


def _attribute(value: str) -> str:
    return html.escape(value, quote=True)


def _image_parts(block: dict[str, Any], file: File | None, *, vision: bool) -> list[dict[str, Any]]:
    """An image as OpenAI content parts: a marker naming it, then (for a model that accepts images) the image."""
    name, media_type = (file.name, file.media_type) if file is not None else (block.get("name", ""), "")
    marker = f'<image name="{_attribute(name)}" media_type="{_attribute(media_type)}"'
    url = block.get("url") or ""
    if file is None and not url:
        return [{"type": "text", "text": f'{marker} unavailable="the file was deleted"/>'}]
    if not vision:
        return [{"type": "text", "text": f'{marker} omitted="this model does not accept images"/>'}]
    if file is not None:
        try:
            with file.content.open("rb") as handle:
                data = handle.read()
        except OSError:
            return [{"type": "text", "text": f'{marker} unavailable="the file cannot be read"/>'}]
        url = f"data:{file.media_type};base64,{base64.b64encode(data).decode()}"
    elif not url.startswith(("https://", "data:image/")):
        return [{"type": "text", "text": f'{marker} omitted="only https and data URLs are passed on"/>'}]
    image = {"type": "image_url", "image_url": {"url": url, "detail": block.get("detail", "auto")}}
    return [{"type": "text", "text": f"{marker}/>"}, image]


def _document_part(block: dict[str, Any], file: File | None, *, max_chars: int) -> dict[str, Any]:
    """A document as a text part: its extracted text (up to ``max_chars``) inside a marker naming the file."""
    if file is None:
        name = _attribute(block.get("name", ""))
        return {"type": "text", "text": f'<attachment name="{name}" unavailable="the file was deleted"/>'}
    marker = f'<attachment name="{_attribute(file.name)}" media_type="{_attribute(file.media_type)}"'
    if not file.text:
        return {"type": "text", "text": f'{marker} empty="no text could be read from it"/>'}
    text, truncated = file.text[:max_chars], len(file.text) > max_chars
    cut = f' truncated="the first {max_chars} of {len(file.text)} characters"' if truncated else ""
    return {"type": "text", "text": f"{marker}{cut}>\n{text}\n</attachment>"}


def user_content(
    content: list[dict[str, Any]], files: dict[str, File], *, vision: bool, max_chars: int
) -> str | list[dict[str, Any]]:
    """A user message's blocks as OpenAI message content: plain text while there are no attachments (as before
    attachments existed), else a list of parts in the blocks' order."""
    if not file_ids_of(content) and not any(block.get("type") == "image" for block in content):
        return text_of(content)
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.extend(_image_parts(block, files.get(block.get("file_id") or ""), vision=vision))
        elif kind == "file":
            parts.append(_document_part(block, files.get(block.get("file_id") or ""), max_chars=max_chars))
    if not any(part["type"] == "image_url" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _attached_files(run: AgentRun, messages: list[dict[str, Any]]) -> dict[str, File]:
    ids: list[str] = []
    for content in [*(m["content"] for m in messages if m["role"] == "user"), run.input]:
        ids.extend(file_ids_of(content))
    valid = []
    for file_id in dict.fromkeys(ids):
        try:
            valid.append(uuid.UUID(file_id))
        except ValueError:
            continue  # not a file of ours: shown as unavailable
    return files_by_id(tenant_id=run.tenant_id, ids=valid) if valid else {}


def chat_messages(run: AgentRun, *, history_window: int | None = None, vision: bool = False) -> list[dict[str, Any]]:
    """The run as OpenAI chat messages: system prompt (and this job's extra instructions), history, input.

    Attached documents give their extracted text (at most ATTACHMENT_TEXT_MAX_CHARS each, marked with the
    file's name); attached images go to the model as ``image_url`` parts (base64 data URLs) when ``vision`` says
    it accepts images, else a note says an image was left out.
    """
    system = "\n\n".join(part for part in (run.system_prompt, run.additional_instructions) if part)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    history = run.history if history_window is None else run.history[-history_window:] if history_window else []
    files = _attached_files(run, history)
    max_chars = int(aihub_settings.ATTACHMENT_TEXT_MAX_CHARS)
    for message in history:
        if message["role"] == "user":
            content = user_content(message["content"], files, vision=vision, max_chars=max_chars)
            if content:
                messages.append({"role": "user", "content": content})
        elif message["role"] == "assistant" and (text := text_of(message["content"])):
            messages.append({"role": "assistant", "content": text})
    messages.append({"role": "user", "content": user_content(run.input, files, vision=vision, max_chars=max_chars)})
    return messages


def llm_turn(provider: ChatProvider, request: ChatRequest) -> Generator[AgentOutput, None, TurnResult]:
    """One model call, streamed as llm.started / llm.chunk / llm.completed; returns what the model said.

    Traced as a ``chat <model>`` span (GenAI semantic conventions) when tracing is on.
    """
    span = (
        None
        if tracing.tracer is None
        else tracing.start_span(f"chat {request.model}", _chat_attributes(provider, request), client=True)
    )
    result = TurnResult()
    error_type = ""
    try:
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
    except Exception as exc:  # not GeneratorExit: a run stopped midway (cancelled) is no failed call
        error_type = getattr(exc, "type_slug", "") or type(exc).__name__
        raise
    finally:
        if span is not None:
            _chat_result(span, result)
            tracing.end_span(span, error_type=error_type)
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


def _chat_attributes(provider: ChatProvider, request: ChatRequest) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": getattr(provider, "gen_ai_provider", "") or "unknown",
        "gen_ai.request.model": request.model,
    }
    for parameter in ("temperature", "max_tokens", "top_p"):
        if isinstance(value := request.parameters.get(parameter), int | float):
            attributes[f"gen_ai.request.{parameter}"] = value
    if tracing.trace_content:
        attributes["gen_ai.input.messages"] = tracing.content(request.messages)
        if request.tools:
            attributes["gen_ai.tool.definitions"] = tracing.content(request.tools)
    return attributes


def _chat_result(span: Any, result: TurnResult) -> None:
    if result.finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
    if result.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
    if tracing.trace_content:
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls]
        span.set_attribute("gen_ai.output.messages", tracing.content([message]))
