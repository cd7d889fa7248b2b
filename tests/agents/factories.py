"""Agents are made through agents.services, so each has its first version, as in real use."""

from __future__ import annotations

from typing import Any

import factory

from agents import services
from agents.models import Agent
from tests.factories import TenantFactory


class AgentFactory(factory.django.DjangoModelFactory[Agent]):
    """``AgentFactory(tenant=..., class_name="tools", tools=["calculator"])``; echo by default."""

    class Meta:
        model = Agent

    tenant = factory.SubFactory(TenantFactory)
    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda a: a.slug.title())
    class_name = "echo"
    config: dict[str, Any] = {}
    model = "offline/aihub-offline-1"
    system_prompt = ""
    tools: list[str] = []

    @classmethod
    def _create(cls, model_class: type[Agent], *args: Any, **kwargs: Any) -> Agent:
        return services.agent_create(**kwargs)
