"""Every write to agents (each change a new immutable version) and model providers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from pydantic import ValidationError as PydanticValidationError

from agents.models import Agent, AgentVersion
from agents.registry import get_agent_class
from agents.tools import get_tool
from aihub.access.models import Tenant

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_VERSIONED_FIELDS = ("name", "description", "class_name", "config", "model", "system_prompt", "tools", "enabled")


def _validated(agent: Agent) -> None:
    """Check the class exists, the config fits its schema (stored normalised) and every tool is known."""
    agent_class = get_agent_class(agent.class_name)
    if agent_class is None:
        raise ValidationError({"class_name": f"No agent class named {agent.class_name!r}."})
    try:
        config = agent_class.Config.model_validate(agent.config or {})
    except PydanticValidationError as exc:
        raise ValidationError(
            {"config": [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]}
        ) from exc
    agent.config = config.model_dump(mode="json")
    unknown = [name for name in agent.tools if get_tool(name) is None]
    if unknown:
        raise ValidationError({"tools": f"Unknown tool(s): {', '.join(unknown)}."})
    if agent_class.supported_tools:
        unsupported = [name for name in agent.tools if name not in agent_class.supported_tools]
        if unsupported:
            raise ValidationError({"tools": f"Class {agent.class_name!r} cannot use: {', '.join(unsupported)}."})
    elif agent.tools:
        raise ValidationError({"tools": f"Class {agent.class_name!r} uses no tools."})
    agent.full_clean(exclude=["config", "tools"])


@transaction.atomic
def agent_create(*, tenant: Tenant, slug: str, class_name: str, created_by: User | None = None, **fields: Any) -> Agent:
    agent = Agent(tenant=tenant, slug=slug, class_name=class_name, **fields)
    agent.name = agent.name or slug
    _validated(agent)
    agent.version = 1
    agent.save()
    AgentVersion.objects.create(agent=agent, version=1, snapshot=agent.snapshot(), created_by=created_by)
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, updated_by: User | None = None, **changes: Any) -> Agent:
    """Apply changes as a new version; a change that alters nothing makes no version."""
    unknown = set(changes) - set(_VERSIONED_FIELDS)
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in sorted(unknown)})
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    before = locked.snapshot()
    for field, value in changes.items():
        setattr(locked, field, value)
    _validated(locked)
    if locked.snapshot() == before:
        return locked
    locked.version += 1
    locked.save()
    AgentVersion.objects.create(agent=locked, version=locked.version, snapshot=locked.snapshot(), created_by=updated_by)
    return locked


@transaction.atomic
def agent_delete(*, agent: Agent) -> None:
    agent.delete()
