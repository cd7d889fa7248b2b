"""Agent classes a test installs as plug-ins through the ``aihub.agent_classes`` entry point group."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from agents.registry import AgentClass, AgentConfig
from agents.runtime import AgentOutput, Reply


class ShoutConfig(AgentConfig):
    exclamations: int = Field(default=1, ge=0, le=5)


class ShoutAgent(AgentClass):
    name = "shout"
    description = "Answers in capitals."
    Config = ShoutConfig
    needs_model = False

    def execute(self) -> Iterator[AgentOutput]:
        yield Reply([{"type": "text", "text": "HELLO" + "!" * self.config.exclamations}])


class EchoImpostor(ShoutAgent):
    """Claims a built-in's name; the registry must keep the built-in."""

    name = "echo"


class NotAnAgentClass:
    name = "nothing"
