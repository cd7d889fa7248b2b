"""Every write to agents (each change a new immutable version) and model providers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError
from pydantic import ValidationError as PydanticValidationError

from agents.models import Agent, AgentVersion, ModelProvider
from agents.registry import get_agent_class
from agents.tools import get_tool
from aihub.access.models import Tenant
from aihub.api.problems import Conflict
from threads.models import ThreadMember

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_VERSIONED_FIELDS = ("name", "description", "class_name", "config", "model", "system_prompt", "tools", "enabled")

# Paths under agents/ that are not agents (see agents/api/urls.py): an agent with such a slug could not be reached.
RESERVED_AGENT_SLUGS = frozenset({"classes", "graph"})


def _config_errors(exc: PydanticValidationError) -> dict[str, list[str]]:
    """Pydantic's errors keyed by dotted path under ``config`` (``config.temperature``), as the API reports them."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        path = ".".join(["config", *(str(part) for part in error["loc"])])
        errors.setdefault(path, []).append(error["msg"])
    return errors


def agent_validate(agent: Agent) -> None:
    """Check the class exists, the config fits its schema and every tool is known; normalise config and tools.

    Raises ValidationError keyed by field (``config.<path>`` for the class's schema). The writes below call it;
    forms call it too, to show errors before anything is saved.
    """
    agent_class = get_agent_class(agent.class_name)
    if agent_class is None:
        raise ValidationError({"class_name": f"No agent class named {agent.class_name!r}."})
    if not isinstance(agent.config, dict):
        raise ValidationError({"config": "The config is a JSON object."})
    try:
        config = agent_class.Config.model_validate(agent.config)
    except PydanticValidationError as exc:
        raise ValidationError(_config_errors(exc)) from exc
    agent.config = config.model_dump(mode="json")
    if not isinstance(agent.tools, list | tuple) or not all(isinstance(name, str) for name in agent.tools):
        raise ValidationError({"tools": "The tools are a list of tool names."})
    agent.tools = list(dict.fromkeys(agent.tools))
    unknown = [name for name in agent.tools if get_tool(name) is None]
    if unknown:
        raise ValidationError({"tools": f"Unknown tool(s): {', '.join(unknown)}."})
    usable = agent_class.tool_names()
    unsupported = [name for name in agent.tools if name not in usable]
    if unsupported:
        reason = f"cannot use: {', '.join(unsupported)}" if usable else "uses no tools"
        raise ValidationError({"tools": f"Class {agent.class_name!r} {reason}."})
    if agent.model and "/" not in agent.model.strip("/"):
        raise ValidationError({"model": "A model id has the form <provider>/<model>, e.g. offline/aihub-offline-1."})
    agent.full_clean(exclude=["config", "tools"])


@transaction.atomic
def agent_create(*, tenant: Tenant, slug: str, class_name: str, created_by: User | None = None, **fields: Any) -> Agent:
    unknown = set(fields) - set(_VERSIONED_FIELDS)
    if unknown:
        raise ValidationError({name: "Agents have no such field." for name in sorted(unknown)})
    if slug.lower() in RESERVED_AGENT_SLUGS:
        raise ValidationError({"slug": f"{slug!r} is reserved: it is a path of the agents API."})
    if Agent.objects.filter(tenant=tenant, slug=slug).exists():
        raise ValidationError({"slug": f"The tenant already has an agent {slug!r}."})
    agent = Agent(tenant=tenant, slug=slug, class_name=class_name, **fields)
    agent.name = agent.name or slug
    agent_validate(agent)
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
    agent_validate(locked)
    if locked.snapshot() == before:
        return locked
    locked.version += 1
    locked.save()
    AgentVersion.objects.create(agent=locked, version=locked.version, snapshot=locked.snapshot(), created_by=updated_by)
    return locked


@transaction.atomic
def agent_delete(*, agent: Agent) -> None:
    """Delete an agent that never ran. Jobs keep the agent (and the version) they ran with, so an agent with
    jobs is a 409: disable it instead (``enabled=False``), which refuses new messages and keeps the history."""
    agent_id = agent.pk
    try:
        agent.delete()
    except ProtectedError as exc:
        raise Conflict(f"Agent {agent.slug!r} has jobs, so it cannot be deleted; disable it instead.") from exc
    # Threads reference agents by id only (they live on a lower floor), so their memberships go here.
    ThreadMember.objects.filter(agent_id=agent_id).delete()


# --- Model providers -------------------------------------------------------------------------------------

_PROVIDER_FIELDS = ("name", "kind", "base_url", "api_key_env", "api_key", "timeout_seconds", "max_retries", "enabled")


@transaction.atomic
def model_provider_create(**fields: Any) -> ModelProvider:
    unknown = set(fields) - set(_PROVIDER_FIELDS)
    if unknown:
        raise ValidationError({name: "Model providers have no such field." for name in sorted(unknown)})
    provider = ModelProvider(**fields)
    provider.full_clean()
    provider.save()
    return provider


@transaction.atomic
def model_provider_update(*, provider: ModelProvider, **changes: Any) -> ModelProvider:
    """Change a provider. ``api_key=None`` (or leaving it out) keeps the stored key; ``""`` clears it."""
    unknown = set(changes) - set(_PROVIDER_FIELDS)
    if unknown:
        raise ValidationError({name: "Model providers have no such field." for name in sorted(unknown)})
    if changes.get("api_key", "") is None:
        del changes["api_key"]
    locked = ModelProvider.objects.select_for_update().get(pk=provider.pk)
    for field, value in changes.items():
        setattr(locked, field, value)
    locked.full_clean()
    locked.save()
    return locked


@transaction.atomic
def model_provider_delete(*, provider: ModelProvider) -> None:
    provider.delete()
