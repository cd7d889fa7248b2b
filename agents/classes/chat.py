"""`chat`: a model with a system prompt, parameters and a window of the thread's history."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from agents.providers import provider_for
from agents.providers.base import ChatRequest
from agents.registry import AgentClass, AgentConfig, register
from agents.runtime import AgentOutput, Reply, chat_messages, llm_turn


class ChatConfig(AgentConfig):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    history_window: int = Field(default=20, ge=0, le=500, description="How many earlier messages the model sees.")


@register
class ChatAgent(AgentClass):
    name = "chat"
    description = "A model with a system prompt and a window of the conversation."
    Config = ChatConfig

    def execute(self) -> Iterator[AgentOutput]:
        config: ChatConfig = self.config
        provider, model = provider_for(self.run.model)
        parameters = {k: v for k, v in (("temperature", config.temperature), ("max_tokens", config.max_tokens)) if v}
        request = ChatRequest(
            model=model, messages=chat_messages(self.run, history_window=config.history_window), parameters=parameters
        )
        result = yield from llm_turn(provider, request)
        yield Reply([{"type": "text", "text": result.text}])
