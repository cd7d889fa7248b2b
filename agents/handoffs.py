"""Multi-agent handoffs: the ``transfer_to_agent`` tool an agent with handoff edges is offered.

The tool is built per run from the agent's edges (agents.models.Handoff), so its JSON schema enumerates exactly
the agents it may hand off to; it is not in the tool registry and is never named in ``Agent.tools``. A handoff
is refused as a tool error the model reads (an unknown or disabled target, required thread state keys missing);
a successful one appends a ``handoff`` event, and the target answers the thread's next message
(agents.selectors.answering_agent). The current job goes on: the source agent tells the user about the handoff.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, cast

from pydantic import ConfigDict, Field, create_model

from agents.models import Handoff
from agents.tools import Tool, ToolContext, ToolError
from threads.models import Thread

TRANSFER_TOOL = "transfer_to_agent"


def handoff_edges(*, agent_id: uuid.UUID) -> list[Handoff]:
    """The agent's outgoing edges to enabled agents, by target slug."""
    edges = Handoff.objects.filter(source_id=agent_id, target__enabled=True).select_related("source", "target")
    return list(edges.order_by("target__slug"))


def _describe(edge: Handoff) -> str:
    line = f"- {edge.target.slug}: {edge.description or edge.target.description or edge.target.name}"
    if edge.required_state_keys:
        line += f" (the thread's state must have: {', '.join(edge.required_state_keys)})"
    return line


def handoff_tool(*, agent_id: uuid.UUID) -> Tool | None:
    """The agent's ``transfer_to_agent`` tool, or None when it has no edge to an enabled agent."""
    return transfer_tool(edges=handoff_edges(agent_id=agent_id))


def transfer_tool(*, edges: list[Handoff]) -> Tool | None:
    """The ``transfer_to_agent`` tool over these edges (to enabled targets, by target slug; None without any).

    The agent graph builds it from the edges it already read, so describing every agent costs no query each.
    """
    if not edges:
        return None
    targets = tuple(edge.target.slug for edge in edges)
    # Literal[...] over the targets: pydantic refuses any other slug, and the schema's ``enum`` lists them.
    target_type = cast(Any, Literal).__getitem__(targets)
    arguments_model = create_model(
        f"{TRANSFER_TOOL}_arguments",
        __config__=ConfigDict(extra="forbid"),
        agent=(target_type, Field(description="The slug of the agent to hand the conversation to.")),
        reason=(str, Field(default="", max_length=1000, description="Why, for the log and the next agent.")),
    )
    description = (
        "Hand the conversation over to another agent: it answers the user's next message on this thread. "
        "Agents you can hand off to:\n" + "\n".join(_describe(edge) for edge in edges)
    )
    return Tool(
        name=TRANSFER_TOOL, description=description, function=transfer_to_agent, arguments_model=arguments_model
    )


def transfer_to_agent(context: ToolContext, agent: str, reason: str = "") -> dict[str, Any]:
    """The tool's body: read the edge again (it may have changed since the run began), check the thread's state
    has the edge's required keys, and record the handoff."""
    from agents import services

    edge = (
        Handoff.objects.filter(source_id=context.agent_id, target__slug=agent, target__tenant_id=context.tenant_id)
        .select_related("source", "target")
        .first()
    )
    if edge is None or not edge.target.enabled:
        raise ToolError(f"There is no agent {agent!r} to hand off to.")
    thread = Thread.objects.filter(pk=context.thread_id, tenant_id=context.tenant_id).first()
    if context.thread_id is None or thread is None:
        raise ToolError("A handoff passes a thread on, and there is no thread.")
    state = thread.state or {}
    missing = [key for key in edge.required_state_keys if state.get(key) is None]
    if missing:
        raise ToolError(
            f"Cannot hand off to {agent!r} yet: the thread's state has no {', '.join(repr(k) for k in missing)}. "
            "Find out and set it first, then hand off again."
        )
    services.handoff_perform(handoff=edge, thread=thread, reason=reason, job_id=context.job_id)
    return {"handed_off_to": agent, "detail": f"{agent} answers the next message on this thread."}
