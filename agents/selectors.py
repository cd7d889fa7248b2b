"""Reads of agents, narrowed to what the caller may see: per-agent rules name agents by slug."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.http import Http404

from agents.models import Agent, AgentVersion

if TYPE_CHECKING:
    from aihub.access.principal import Principal

AGENTS_RESOURCE = "agents"


def agent_list(*, principal: Principal) -> QuerySet[Agent]:
    """The tenant's agents the caller may see: all with ``aihub.user.agents.>``, else those named by a rule."""
    agents = Agent.objects.filter(tenant=principal.tenant).order_by("slug")
    return principal.visible(agents, AGENTS_RESOURCE, id_field="slug")


def agent_get(*, principal: Principal, slug: str) -> Agent:
    """The agent, or Http404 when it does not exist or the caller may not see it (the two look the same)."""
    agent = agent_list(principal=principal).filter(slug=slug).first()
    if agent is None:
        raise Http404(f"No agent {slug!r}.")
    return agent


def agent_version_list(*, agent: Agent) -> QuerySet[AgentVersion]:
    """The agent's versions, newest first."""
    return AgentVersion.objects.filter(agent=agent).select_related("created_by").order_by("-version")
