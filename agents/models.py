"""Agent instances with immutable versions, and model providers."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from aihub.access.models import Tenant


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

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
