"""``manage.py seed_demo_agents [--tenant demo]``: demo agents on the offline model, safe to run on every start."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.models import Agent
from agents.providers import DEFAULT_MODEL
from aihub.access.management.adapters import service_errors
from aihub.access.models import Tenant

DEMO_AGENTS: list[dict[str, Any]] = [
    {
        "slug": "echo",
        "name": "Echo",
        "class_name": "echo",
        "description": "Repeats what you say, word by word. Needs no model.",
        "config": {"chunk_delay_seconds": 0.05},
        "conversation_starters": ["Hello there!", "Say this back to me word by word"],
    },
    {
        "slug": "assistant",
        "name": "Assistant",
        "class_name": "chat",
        "description": "A chat agent on the built-in offline model.",
        "model": DEFAULT_MODEL,
        "system_prompt": "You are a helpful assistant.",
        # The offline model takes images (it says which it got), so attachments show end to end in the demo.
        "config": {"vision": True},
    },
    {
        "slug": "calculator",
        "name": "Calculator",
        "class_name": "tools",
        "description": "Calls the calculator and clock tools (try: calculate 2 * (3 + 4)).",
        "model": DEFAULT_MODEL,
        "tools": ["calculator", "current_time"],
        # The offline model calls a tool on "use <name>" or a "calculate" request: these run one each.
        "conversation_starters": ["calculate 2 * (3 + 4)", "use current_time"],
        "quick_replies": ["calculate 6 * 7"],
    },
]


class Command(BaseCommand):
    help = "Create the demo agents (echo, assistant, calculator) in a tenant unless they exist."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", default="demo", help="The tenant's slug (default: demo).")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}; run seed_demo first.")
        created = []
        with service_errors():
            for spec in DEMO_AGENTS:
                if not Agent.objects.filter(tenant=tenant, slug=spec["slug"]).exists():
                    services.agent_create(tenant=tenant, **spec)
                    created.append(spec["slug"])
        existing = [spec["slug"] for spec in DEMO_AGENTS if spec["slug"] not in created]
        self.stdout.write(
            f"Demo agents in {tenant.slug}: created {', '.join(created) or 'none'}"
            + (f"; already there: {', '.join(existing)}" if existing else "")
        )
