from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents, model providers and tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in classes and tools register themselves on import; plug-ins come from entry points.
        from agents import registry, tools  # noqa: F401
        from agents.classes import chat, echo, tooling  # noqa: F401
