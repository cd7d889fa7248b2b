from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents, model providers and tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in classes and tools register themselves on import; plug-ins come from entry points.
        # retrieval registers the knowledge_search tool.
        from agents import registry, retrieval, tools  # noqa: F401
        from agents.classes import chat, echo, rag, tooling  # noqa: F401
