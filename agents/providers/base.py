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


CLIENT_CONFIG_PROVIDER = "client_config"
"""How errors and usage name the endpoint a request brought (``client_config``) in place of a provider."""


@dataclass(frozen=True)
class ClientConfig:
    """Model credentials a request brought for its own job (``client_config``): an OpenAI-compatible endpoint
    used instead of the operator's provider. Held in memory for the run only; never stored, logged or shown, so
    the key and the headers stay out of ``repr`` too (tracebacks and debug logs print it)."""

    base_url: str
    api_key: str = field(repr=False)
    default_headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never appear in an error message: the key and every header value."""
        return (self.api_key, *self.default_headers.values())


class ProviderError(Exception):
    """A provider failed in a way the job reports (timeouts, refusals, malformed answers)."""

    def __init__(self, detail: str, *, status: int = 502, type_slug: str = "provider-error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.type_slug = type_slug


class ChatProvider(Protocol):
    def stream(self, request: ChatRequest) -> Iterator[StreamItem]: ...
