"""Agent instances with immutable versions, and model providers."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from aihub.access.models import Tenant
from knowledge.fields import EmbeddingField


class Agent(models.Model):
    """An agent instance: an implementation class plus its configuration, in one tenant."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agents")
    slug = models.SlugField(max_length=63)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    class_name = models.CharField(max_length=100)
    config = models.JSONField(default=dict, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="<provider>/<model>, e.g. offline/aihub-offline-1")
    system_prompt = models.TextField(blank=True)
    tools = models.JSONField(default=list, blank=True)
    # What frontends offer around a conversation (the agent graph, the playground): prompts to start a new thread
    # with, and short answers to suggest after a reply. Validated by agents.services.agent_validate.
    conversation_starters = models.JSONField(default=list, blank=True)
    quick_replies = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # The latest AgentVersion; every change makes a new one (services.agent_update).
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "slug"]
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="agent_unique_slug_per_tenant")]

    def __str__(self) -> str:
        return self.slug

    def snapshot(self) -> dict[str, Any]:
        """What a version freezes: everything that changes how the agent behaves."""
        return {
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "class_name": self.class_name,
            "config": self.config,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "tools": list(self.tools),
            "conversation_starters": list(self.conversation_starters),
            "quick_replies": list(self.quick_replies),
            "enabled": self.enabled,
        }


class AgentVersion(models.Model):
    id = models.BigAutoField(primary_key=True)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-version"]
        constraints = [models.UniqueConstraint(fields=["agent", "version"], name="agent_version_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.version}"


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible endpoint"
    OFFLINE = "offline", "Built-in offline model"


class ModelProvider(models.Model):
    """A source of models. The built-in offline provider needs no row; OpenAI-compatible endpoints do."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=63, unique=True, help_text="The prefix of model ids: <name>/<model>.")
    kind = models.CharField(max_length=16, choices=ProviderKind.choices, default=ProviderKind.OPENAI)
    base_url = models.URLField(max_length=500, blank=True)
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable holding the API key."
    )
    # Never returned by the API; prefer api_key_env so the key stays out of the database.
    api_key = models.CharField(max_length=500, blank=True)
    timeout_seconds = models.FloatField(default=60.0)
    max_retries = models.PositiveSmallIntegerField(default=2)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The model catalogue's copy of the provider's model list (agents.catalogue): when it was last asked (a
    # conditional update on this claims the refresh, so one request asks at a time), when it last answered, and
    # since when it has been failing (NULL while the list is fresh).
    models_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    models_refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    models_stale_since = models.DateTimeField(null=True, blank=True, editable=False)
    models_error = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelType(models.TextChoices):
    CHAT = "chat"
    EMBEDDING = "embedding"
    # Passed through by /openai/v1/images/generations and /openai/v1/audio/* (aihub.interop.passthrough).
    IMAGE = "image"
    AUDIO = "audio"
    OTHER = "other"


class ModelSource(models.TextChoices):
    BUILTIN = "builtin", "Built in"
    PROVIDER = "provider", "The provider's model list"


class CatalogueModel(models.Model):
    """One model on offer: from a provider's model list (kept as its last good copy) or built in.

    Operators set what a list cannot say: the type when guessed wrong, the context length, the prices per
    million tokens (usage costs come from them) and whether the API shows the model at all.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model_id = models.CharField(max_length=300, unique=True, help_text="<provider>/<model>, as agents name it.")
    provider = models.ForeignKey(
        ModelProvider, on_delete=models.CASCADE, null=True, blank=True, related_name="catalogue_models"
    )
    provider_name = models.SlugField(max_length=63)
    name = models.CharField(max_length=250, help_text="The provider's own name of the model.")
    type = models.CharField(max_length=16, choices=ModelType.choices, default=ModelType.CHAT)
    context_length = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens; empty when unknown.")
    dimensions = models.PositiveIntegerField(null=True, blank=True, help_text="Embedding models: vector size.")
    input_price_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="Price of a million input tokens."
    )
    output_price_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="Price of a million output tokens."
    )
    visible = models.BooleanField(default=True, help_text="Shown by the API's model catalogue.")
    source = models.CharField(max_length=16, choices=ModelSource.choices, default=ModelSource.PROVIDER)
    # False once the provider's latest good list no longer has it (kept: jobs and prices refer to it).
    available = models.BooleanField(default=True)
    owned_by = models.CharField(max_length=200, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["type", "model_id"]
        verbose_name = "catalogue model"

    def __str__(self) -> str:
        return self.model_id


class Handoff(models.Model):
    """A handoff edge: ``source`` may pass the thread to ``target`` (its ``transfer_to_agent`` tool).

    Both agents are of one tenant and differ (agents.services.handoff_validate). Edges are read when a job runs,
    not frozen in agent versions: removing an edge stops handoffs at once, also for jobs already queued.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="handoffs")
    target = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="handoffs_in")
    description = models.TextField(blank=True, help_text="When to hand off: the model reads it in the tool.")
    required_state_keys = models.JSONField(
        default=list, blank=True, help_text="Thread state keys that must be set before the handoff is allowed."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "target__slug"]
        constraints = [
            models.UniqueConstraint(fields=["source", "target"], name="handoff_unique_edge"),
            models.CheckConstraint(condition=~models.Q(source=models.F("target")), name="handoff_not_to_itself"),
        ]

    def __str__(self) -> str:
        return f"{self.source} → {self.target}"


class MemoryScope(models.TextChoices):
    USER = "user", "One user's"
    TENANT = "tenant", "The tenant's (shared)"


class Memory(models.Model):
    """Something long-term memory keeps: about one user (scope ``user``, ``owner`` set) or the whole tenant.

    The embedding is stored like knowledge chunks' (``knowledge.fields.EmbeddingField``: pgvector on PostgreSQL,
    float32 bytes on SQLite), with the embedder that made it, so search only compares vectors of one embedder.
    Where it came from (thread, job, agent) is provenance only: deleting those keeps the memory.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memories")
    scope = models.CharField(max_length=16, choices=MemoryScope.choices, default=MemoryScope.USER)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="memories"
    )
    text = models.TextField()
    embedder = models.CharField(max_length=200)
    dimensions = models.PositiveIntegerField()
    embedding = EmbeddingField()
    source_thread = models.ForeignKey(
        "threads.Thread", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The job by id only: jobs sit on the floor above agents, so agents keep no foreign key into them.
    source_job_id = models.UUIDField(null=True, blank=True)
    source_agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "memories"
        indexes = [models.Index(fields=["tenant", "scope", "owner"], name="agents_memory_owner")]
        constraints = [
            # A user's memory has its user; a tenant's memory belongs to no one in particular.
            models.CheckConstraint(
                condition=(models.Q(scope="user", owner__isnull=False) | models.Q(scope="tenant", owner__isnull=True)),
                name="memory_owner_matches_scope",
            )
        ]

    def __str__(self) -> str:
        return self.text[:60]
