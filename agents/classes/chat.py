"""`chat`: a model with a system prompt, parameters and a window of the thread's history."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from agents.memory import MEMORY_HELP, recall
from agents.providers import provider_for
from agents.providers.base import ChatRequest
from agents.registry import AgentClass, AgentConfig, register
from agents.runtime import VISION_HELP, AgentOutput, Reply, chat_messages, llm_turn


class ChatConfig(AgentConfig):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    history_window: int = Field(default=20, ge=0, le=500, description="How many earlier messages the model sees.")
    vision: bool = Field(default=False, description=VISION_HELP)
    memory: bool = Field(default=False, description=MEMORY_HELP)
    memory_top_k: int = Field(default=5, ge=1, le=50, description="How many memories a job recalls at most.")


@register
class ChatAgent(AgentClass):
    name = "chat"
    description = "A model with a system prompt and a window of the conversation."
    Config = ChatConfig

    def execute(self) -> Iterator[AgentOutput]:
        config: ChatConfig = self.config
        provider, model = provider_for(self.run.model, client_config=self.run.client_config)
        parameters = {k: v for k, v in (("temperature", config.temperature), ("max_tokens", config.max_tokens)) if v}
        messages = chat_messages(self.run, history_window=config.history_window, vision=config.vision)
        if config.memory:
            messages = yield from recall(run=self.run, messages=messages, top_k=config.memory_top_k)
        request = ChatRequest(model=model, messages=messages, parameters=parameters)
        result = yield from llm_turn(provider, request)
        yield Reply([{"type": "text", "text": result.text}])
