"""`tools`: a model calling registered tools in a loop, for at most ``max_steps`` model turns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from agents.providers import provider_for
from agents.providers.base import ChatRequest
from agents.registry import AgentClass, AgentConfig, register
from agents.runtime import AgentOutput, Emit, Reply, TurnEnded, chat_messages, llm_turn
from agents.tools import TOOLS, ToolArgumentsInvalid, ToolContext, ToolError, get_tool


class ToolsConfig(AgentConfig):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_steps: int = Field(default=5, ge=1, le=50, description="Model turns before the agent gives up.")
    history_window: int = Field(default=20, ge=0, le=500)


@register
class ToolsAgent(AgentClass):
    name = "tools"
    description = "A model that calls the agent's tools until it can answer (function calling)."
    Config = ToolsConfig

    @classmethod
    def tool_names(cls) -> tuple[str, ...]:
        # Read when asked, so tools registered after this module (plug-ins) are offered too.
        return tuple(TOOLS)

    def execute(self) -> Iterator[AgentOutput]:
        config: ToolsConfig = self.config
        provider, model = provider_for(self.run.model)
        tools = [t for name in self.run.tools if (t := get_tool(name)) is not None]
        messages = chat_messages(self.run, history_window=config.history_window)
        parameters = {"temperature": config.temperature} if config.temperature is not None else {}
        context = ToolContext(
            tenant_id=self.run.tenant_id,
            thread_id=self.run.thread_id,
            job_id=self.run.job_id,
            agent_id=self.run.agent_id,
            user_id=self.run.user_id,
            context=self.run.context,
        )
        for _step in range(config.max_steps):
            request = ChatRequest(
                model=model, messages=messages, tools=[t.openai_schema() for t in tools], parameters=parameters
            )
            result = yield from llm_turn(provider, request)
            if not result.tool_calls:
                yield Reply([{"type": "text", "text": result.text}])
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": result.text or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                        for call in result.tool_calls
                    ],
                }
            )
            for call in result.tool_calls:
                if self.run.should_stop():
                    return
                yield Emit("tool.started", {"id": call.id, "name": call.name, "arguments": call.arguments})
                output, is_error = self._call(call.name, call.arguments, context)
                yield Emit("tool.completed", {"id": call.id, "name": call.name, "output": output, "is_error": is_error})
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(output)})
            yield TurnEnded()
        yield Reply([{"type": "text", "text": f"I could not finish within {config.max_steps} steps."}])

    def _call(self, name: str, arguments: dict[str, Any], context: ToolContext) -> tuple[Any, bool]:
        tool = get_tool(name) if name in self.run.tools else None
        if tool is None:
            return f"No tool named {name!r} is available.", True
        try:
            return tool.call(context, arguments), False
        except ToolArgumentsInvalid as exc:
            return {"error": "invalid arguments", "errors": exc.errors}, True
        except ToolError as exc:
            return str(exc), True
