"""Reads of agents, narrowed to what the caller may see: per-agent rules name agents by slug."""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from agents.models import Agent, AgentVersion, Handoff
from agents.providers import DEFAULT_MODEL
from agents.registry import get_agent_class
from aihub.api.problems import not_found
from threads.events import EventType
from threads.models import Event
from threads.selectors import thread_member_list

if TYPE_CHECKING:
    from aihub.access.principal import Principal
    from threads.models import Thread

AGENTS_RESOURCE = "agents"


def agent_list(*, principal: Principal) -> QuerySet[Agent]:
    """The tenant's agents the caller may see: all with ``aihub.user.agents.>``, else those named by a rule."""
    agents = Agent.objects.filter(tenant=principal.tenant).order_by("slug")
    return principal.visible(agents, AGENTS_RESOURCE, id_field="slug")


def agent_model(agent: Agent) -> str:
    """The model the agent's jobs use: the one it names, the default for classes that need one, else ''."""
    if agent.model:
        return agent.model
    agent_class = get_agent_class(agent.class_name)
    return DEFAULT_MODEL if agent_class is not None and agent_class.needs_model else ""


def agent_get(*, principal: Principal, slug: str) -> Agent:
    """The agent, or Http404 when it does not exist or the caller may not see it (the two look the same)."""
    agent = agent_list(principal=principal).filter(slug=slug).first()
    if agent is None:
        raise not_found("agent", slug)
    return agent


@functools.lru_cache(maxsize=1024)
def agent_version_snapshot(*, agent_id: uuid.UUID, version: int) -> dict[str, Any]:
    """The configuration an agent had at ``version``. Versions are written once and never changed, so each is
    read once per process; treat the dict as read-only."""
    return AgentVersion.objects.values_list("snapshot", flat=True).get(agent_id=agent_id, version=version)


def agent_version_list(*, agent: Agent) -> QuerySet[AgentVersion]:
    """The agent's versions, newest first."""
    return AgentVersion.objects.filter(agent=agent).select_related("created_by").order_by("-version")


def answering_agent(*, principal: Principal, thread: Thread | None, slug: str | None) -> Agent:
    """The agent that answers a message: the one named, else the agent the thread was last handed off to (its
    current agent), else the thread's only agent member.

    Raises Http404 for a named agent the caller cannot see, ValidationError (on ``agent``) when none is named
    and the thread does not have exactly one visible agent.
    """
    if slug:
        return agent_get(principal=principal, slug=slug)
    if thread is None:
        raise ValidationError({"agent": "Name the agent to answer a new thread."})
    if (current := thread_current_agent_id(thread=thread)) is not None:
        handed_to = agent_list(principal=principal).filter(pk=current).first()
        if handed_to is None:
            raise ValidationError(
                {"agent": "The thread was handed off to an agent that no longer exists or is not visible to you."}
            )
        return handed_to
    agent_ids = [
        agent_id
        for agent_id in thread_member_list(thread=thread).values_list("agent_id", flat=True)
        if agent_id is not None
    ]
    if len(agent_ids) != 1:
        have = "no agent" if not agent_ids else f"{len(agent_ids)} agents"
        raise ValidationError({"agent": f"Name the agent to answer: this thread has {have}."})
    agent = agent_list(principal=principal).filter(pk=agent_ids[0]).first()
    if agent is None:
        raise ValidationError({"agent": "The thread's agent no longer exists or is not visible to you."})
    return agent


def thread_current_agent_id(*, thread: Thread) -> uuid.UUID | None:
    """The agent the thread was last handed off to (the target of its latest ``handoff`` event), if any."""
    event = Event.objects.filter(thread=thread, type=EventType.HANDOFF).order_by("-sequence").first()
    if event is None:
        return None
    try:
        return uuid.UUID(str(event.data.get("to_agent")))
    except ValueError:
        return None


def handoff_list(*, principal: Principal) -> QuerySet[Handoff]:
    """The tenant's handoff edges between agents the caller may both see."""
    visible = agent_list(principal=principal)
    edges = Handoff.objects.filter(source__in=visible, target__in=visible).select_related("source", "target")
    return edges.order_by("source__slug", "target__slug")


def agent_handoff_list(*, principal: Principal, agent: Agent) -> QuerySet[Handoff]:
    """An agent's outgoing edges to agents the caller may see."""
    return handoff_list(principal=principal).filter(source=agent)
