"""What every model provider speaks: a chat request in, a stream of deltas, tool calls and usage out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    model: str
    # OpenAI chat format: [{"role": "system"|"user"|"assistant"|"tool", "content": ..., ...}]
    messages: list[dict[str, Any]]
    # OpenAI function tools: [{"type": "function", "function": {"name", "description", "parameters"}}]
    tools: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Finished:
    reason: str


StreamItem = TextDelta | ToolCall | Usage | Finished


class ProviderError(Exception):
    """A provider failed in a way the job reports (timeouts, refusals, malformed answers)."""

    def __init__(self, detail: str, *, status: int = 502, type_slug: str = "provider-error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.type_slug = type_slug


class ChatProvider(Protocol):
    def stream(self, request: ChatRequest) -> Iterator[StreamItem]: ...
