"""`echo`: answers with the message it got, deterministically and without a model. For demos and tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

from pydantic import Field

from agents.registry import AgentClass, AgentConfig, register
from agents.runtime import AgentOutput, Emit, Reply
from threads.content import text_of


class EchoConfig(AgentConfig):
    prefix: str = Field(default="", max_length=200, description="Put before the echoed text.")
    chunk_words: int = Field(default=1, ge=1, le=100, description="Words per llm.chunk event.")
    chunk_delay_seconds: float = Field(
        default=0, ge=0, le=10, description="Pause before each chunk, to watch streaming (and test cancelling)."
    )


@register
class EchoAgent(AgentClass):
    name = "echo"
    description = "Repeats the message it receives, streamed word by word. Needs no model."
    Config = EchoConfig
    needs_model = False

    def execute(self) -> Iterator[AgentOutput]:
        config: EchoConfig = self.config
        text = f"{config.prefix}{text_of(self.run.input)}"
        words = text.split(" ")
        yield Emit("llm.started", {"model": "echo"})
        for start in range(0, len(words), config.chunk_words):
            if config.chunk_delay_seconds:
                time.sleep(config.chunk_delay_seconds)
            if self.run.should_stop():
                return
            chunk = " ".join(words[start : start + config.chunk_words])
            yield Emit("llm.chunk", {"delta": chunk if start == 0 else f" {chunk}"})
        usage = {"input_tokens": len(words), "output_tokens": len(words)}
        yield Emit("llm.completed", {"model": "echo", "finish_reason": "stop", "usage": usage})
        yield Reply([{"type": "text", "text": text}])
