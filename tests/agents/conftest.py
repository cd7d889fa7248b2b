"""Fixtures for agent tests: a loopback OpenAI-compatible server and a model provider row pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.models import ModelProvider, ProviderKind
from tests.agents.openai_server import OpenAIServer

LOOPBACK_API_KEY = "sk-loopback-test-key"


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) speaking the chat completions API; script its replies."""
    server = OpenAIServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def loopback_provider(db: None, openai_server: OpenAIServer) -> ModelProvider:
    """A ``ModelProvider`` named ``loopback`` for the loopback server, with small timeouts and one retry."""
    return ModelProvider.objects.create(
        name="loopback",
        kind=ProviderKind.OPENAI,
        base_url=openai_server.base_url,
        api_key=LOOPBACK_API_KEY,
        timeout_seconds=2.0,
        max_retries=1,
    )
