"""Every write to agents (each change a new immutable version) and model providers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from pydantic import ValidationError as PydanticValidationError

from agents.models import Agent, AgentVersion, Handoff, ModelProvider
from agents.registry import get_agent_class
from agents.tools import get_tool
from aihub.access.models import Tenant
from aihub.api.problems import Conflict
from threads import services as thread_services
from threads.events import EventType, NewEvent
from threads.models import Event, Thread, ThreadMember

if TYPE_CHECKING:
    import uuid

    from django.contrib.auth.models import User

_VERSIONED_FIELDS = (
    "name",
    "description",
    "class_name",
    "config",
    "model",
    "system_prompt",
    "tools",
    "conversation_starters",
    "quick_replies",
    "enabled",
)

# Bounds of what frontends show as buttons: (most entries, longest entry in characters).
CONVERSATION_STARTERS_MAX = (10, 300)
QUICK_REPLIES_MAX = (10, 100)

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
    starters = agent.conversation_starters
    agent.conversation_starters = _phrases(starters, "conversation_starters", *CONVERSATION_STARTERS_MAX)
    agent.quick_replies = _phrases(agent.quick_replies, "quick_replies", *QUICK_REPLIES_MAX)
    if agent.model and "/" not in agent.model.strip("/"):
        raise ValidationError({"model": "A model id has the form <provider>/<model>, e.g. offline/aihub-offline-1."})
    agent.full_clean(exclude=["config", "tools"])


def _phrases(value: Any, field: str, most: int, longest: int) -> list[str]:
    """A list of distinct non-blank strings (stripped), at most ``most`` of at most ``longest`` characters.

    Blanks and repeats are refused rather than dropped: they are buttons a frontend would show, so the operator
    should see that the list is not what they meant.
    """
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValidationError({field: "A list of strings."})
    phrases = [item.strip() for item in value]
    if len(phrases) > most:
        raise ValidationError({field: f"At most {most} entries."})
    if any(not phrase for phrase in phrases):
        raise ValidationError({field: "Entries cannot be blank."})
    too_long = [phrase for phrase in phrases if len(phrase) > longest]
    if too_long:
        raise ValidationError({field: f"Entries have at most {longest} characters: {too_long[0][:40]!r}… is longer."})
    repeated = sorted({phrase for phrase in phrases if phrases.count(phrase) > 1})
    if repeated:
        raise ValidationError({field: f"Entries are distinct: {', '.join(repr(p) for p in repeated)} repeated."})
    return phrases


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


# --- Handoff edges ---------------------------------------------------------------------------------------

HANDOFF_STATE_KEYS_MAX = 20


def handoff_validate(handoff: Handoff) -> None:
    """An edge joins two different agents of one tenant; its required state keys are distinct non-empty names.

    Raises ValidationError keyed by field; normalises ``required_state_keys`` (stripped, duplicates dropped).
    The writes below call it, and so does the admin's inline form.
    """
    source, target = handoff.source, handoff.target
    if source.tenant_id != target.tenant_id:
        raise ValidationError({"target": "A handoff target is an agent of the same tenant."})
    if source.pk == target.pk:
        raise ValidationError({"target": "An agent cannot hand off to itself."})
    keys = handoff.required_state_keys
    if not isinstance(keys, list | tuple) or not all(isinstance(key, str) and key.strip() for key in keys):
        raise ValidationError({"required_state_keys": "The required state keys are a list of non-empty names."})
    keys = list(dict.fromkeys(key.strip() for key in keys))
    if len(keys) > HANDOFF_STATE_KEYS_MAX or any(len(key) > 200 for key in keys):
        raise ValidationError(
            {"required_state_keys": f"At most {HANDOFF_STATE_KEYS_MAX} keys of at most 200 characters each."}
        )
    handoff.required_state_keys = keys
    duplicate = Handoff.objects.filter(source=source, target=target).exclude(pk=handoff.pk)
    if duplicate.exists():
        raise ValidationError({"target": f"{source.slug!r} already hands off to {target.slug!r}."})


@transaction.atomic
def handoff_create(
    *, source: Agent, target: Agent, description: str = "", required_state_keys: list[str] | None = None
) -> Handoff:
    handoff = Handoff(
        source=source, target=target, description=description, required_state_keys=list(required_state_keys or [])
    )
    handoff_validate(handoff)
    try:
        with transaction.atomic():
            handoff.save()
    except IntegrityError as exc:
        # The same edge created at the same moment by another request: the check above could not see it.
        raise ValidationError({"target": f"{source.slug!r} already hands off to {target.slug!r}."}) from exc
    return handoff


@transaction.atomic
def handoff_update(
    *, handoff: Handoff, description: str | None = None, required_state_keys: list[str] | None = None
) -> Handoff:
    """Change what the edge says; its ends are fixed (delete it and create another to move it)."""
    if description is not None:
        handoff.description = description
    if required_state_keys is not None:
        handoff.required_state_keys = required_state_keys
    handoff_validate(handoff)
    handoff.save(update_fields=["description", "required_state_keys"])
    return handoff


@transaction.atomic
def handoff_delete(*, handoff: Handoff) -> None:
    handoff.delete()


@transaction.atomic
def handoff_perform(*, handoff: Handoff, thread: Thread, reason: str = "", job_id: uuid.UUID | None = None) -> Event:
    """Pass the thread to the edge's target: a ``handoff`` event (the thread's current agent is the target of
    its latest one, agents.selectors.thread_current_agent_id) and the target as a member of the thread."""
    thread_services.thread_member_add(thread=thread, agent_id=handoff.target_id)
    data = {
        "from": handoff.source.slug,
        "to": handoff.target.slug,
        "from_agent": str(handoff.source_id),
        "to_agent": str(handoff.target_id),
        "reason": reason,
    }
    [event] = thread_services.events_append(
        thread=thread, events=[NewEvent(EventType.HANDOFF, data, job_id=job_id, agent_id=handoff.source_id)]
    )
    return event
