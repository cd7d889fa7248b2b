"""`tools`: a model calling registered tools in a loop, for at most ``max_steps`` model turns."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from dataclasses import asdict
from typing import Any

from pydantic import Field

from agents.handoffs import TRANSFER_TOOL, handoff_tool
from agents.memory import MEMORY_HELP, recall, stored_memory_event
from agents.providers import provider_for
from agents.providers.base import ChatRequest, ToolCall
from agents.registry import AgentClass, AgentConfig, register
from agents.retrieval import retrieval_output, retrieved_citations
from agents.runtime import VISION_HELP, AgentOutput, AwaitInput, Emit, Reply, TurnEnded, chat_messages, llm_turn
from agents.tools import TOOLS, Tool, ToolArgumentsInvalid, ToolContext, ToolError, client_tool_schema, get_tool


class ToolsConfig(AgentConfig):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_steps: int = Field(default=5, ge=1, le=50, description="Model turns before the agent gives up.")
    history_window: int = Field(default=20, ge=0, le=500)
    vision: bool = Field(default=False, description=VISION_HELP)
    memory: bool = Field(default=False, description=MEMORY_HELP)
    memory_top_k: int = Field(default=5, ge=1, le=50, description="How many memories a job recalls at most.")


@register
class ToolsAgent(AgentClass):
    name = "tools"
    description = "A model that calls the agent's tools until it can answer (function calling)."
    Config = ToolsConfig
    _transfer: Tool | None = None  # this run's transfer_to_agent, when the agent has handoff edges

    @classmethod
    def tool_names(cls) -> tuple[str, ...]:
        # Read when asked, so tools registered after this module (plug-ins) are offered too.
        return tuple(TOOLS)

    def execute(self) -> Iterator[AgentOutput]:
        config: ToolsConfig = self.config
        provider, model = provider_for(self.run.model, client_config=self.run.client_config)
        tools = [t for name in self._tool_names() if (t := get_tool(name)) is not None]
        # An agent with handoff edges is offered transfer_to_agent too, built from its edges (agents.handoffs).
        self._transfer = handoff_tool(agent_id=self.run.agent_id)
        if self._transfer is not None:
            tools.append(self._transfer)
        messages = chat_messages(self.run, history_window=config.history_window, vision=config.vision)
        if config.memory and self.run.resume is None:
            messages = yield from recall(run=self.run, messages=messages, top_k=config.memory_top_k)
        parameters = {"temperature": config.temperature} if config.temperature is not None else {}
        context = ToolContext(
            tenant_id=self.run.tenant_id,
            thread_id=self.run.thread_id,
            job_id=self.run.job_id,
            agent_id=self.run.agent_id,
            user_id=self.run.user_id,
            context=self.run.context,
            publisher=self.run.publish_artifact,
        )
        first_step = 0
        if (resume := self.run.resume) is not None:
            # A paused run carries on: the conversation as it stood, the call that waited answered first, then
            # the rest of that turn's calls (another may pause again), then the next model turn.
            messages, step = resume.state["messages"], int(resume.state["step"])
            calls = [ToolCall(**call) for call in resume.state["calls"]]
            yield from self._answered(calls[0], resume.response, context, messages)
            if (yield from self._call_tools(calls[1:], step=step, messages=messages, context=context)):
                return
            yield TurnEnded()
            first_step = step + 1
        # Tools the client declared for this job are offered beside the agent's own; the client runs them.
        offered = [*(t.openai_schema() for t in tools), *(client_tool_schema(t) for t in self.run.client_tools)]
        for step in range(first_step, config.max_steps):
            request = ChatRequest(model=model, messages=messages, tools=offered, parameters=parameters)
            result = yield from llm_turn(provider, request)
            if not result.tool_calls:
                # Passages a knowledge_search call found in this run are cited, chunk by chunk.
                yield Reply([{"type": "text", "text": result.text}, *retrieved_citations(messages)])
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
            if (yield from self._call_tools(result.tool_calls, step=step, messages=messages, context=context)):
                return
            yield TurnEnded()
        yield Reply([{"type": "text", "text": f"I could not finish within {config.max_steps} steps."}])

    def _call_tools(
        self, calls: list[ToolCall], *, step: int, messages: list[dict[str, Any]], context: ToolContext
    ) -> Generator[AgentOutput, None, bool]:
        """Run one turn's tool calls in order; True when the run must end here (stopped, or paused).

        A tool that requires approval is never called on the model's say-so, and a client's tool is not ours to
        call: the run pauses with the call as the request, saving the conversation and the calls still to make,
        so the answer resumes it.
        """
        client_tools = {t["name"] for t in self.run.client_tools}
        for index, call in enumerate(calls):
            if self.run.should_stop():
                return True
            tool = self._tool(call.name)
            pause = "tool_approval" if tool is not None and tool.requires_approval else ""
            if tool is None and call.name in client_tools:
                pause = "client_tool"
            if pause:
                yield AwaitInput(
                    request={"type": pause, "tool_call": asdict(call)},
                    state={"messages": messages, "step": step, "calls": [asdict(c) for c in calls[index:]]},
                )
                return True
            yield Emit("tool.started", {"id": call.id, "name": call.name, "arguments": call.arguments})
            output, is_error = self._call(call, context)
            yield Emit("tool.completed", {"id": call.id, "name": call.name, "output": output, "is_error": is_error})
            if (retrieval := retrieval_output(output, is_error)) is not None:
                yield Emit("retrieval.completed", {**retrieval, "tool_call_id": call.id})
            if (stored := stored_memory_event(call.name, output, is_error)) is not None:
                yield Emit("memory.stored", {**stored, "tool_call_id": call.id})
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(output)})
        return False

    def _answered(
        self, call: ToolCall, response: dict[str, Any], context: ToolContext, messages: list[dict[str, Any]]
    ) -> Iterator[AgentOutput]:
        """The paused call, settled by the person's answer: run it, tell the model it was rejected, or use the
        output they supplied. Only an approved call emits ``tool.started``: the others never ran."""
        action = response.get("action")
        completed: dict[str, Any] = {"id": call.id, "name": call.name}
        if action == "approve":
            yield Emit("tool.started", {"id": call.id, "name": call.name, "arguments": call.arguments})
            output, is_error = self._call(call, context)
            completed |= {"output": output, "is_error": is_error, "approved": True}
        elif action == "tool_output":
            output = response.get("output")
            completed |= {"output": output, "is_error": False, "supplied": True}
        else:
            reason = str(response.get("reason") or "").strip()
            output = f"The user rejected this call of {call.name}." + (f" Reason: {reason}" if reason else "")
            completed |= {"output": output, "is_error": True, "rejected": True}
        yield Emit("tool.completed", completed)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(output)})

    def _tool_names(self) -> list[str]:
        # An agent with memory enabled is offered `remember` without listing it; without memory it never is.
        names = [name for name in self.run.tools if name != "remember" or self.config.memory]
        return [*names, "remember"] if self.config.memory and "remember" not in names else names

    def _tool(self, name: str) -> Tool | None:
        if name == TRANSFER_TOOL:
            return self._transfer
        return get_tool(name) if name in self._tool_names() else None

    def _call(self, call: ToolCall, context: ToolContext) -> tuple[Any, bool]:
        tool = self._tool(call.name)
        if tool is None:
            return f"No tool named {call.name!r} is available.", True
        try:
            return tool.call(context, call.arguments, call_id=call.id), False
        except ToolArgumentsInvalid as exc:
            return {"error": "invalid arguments", "errors": exc.errors}, True
        except ToolError as exc:
            return str(exc), True
