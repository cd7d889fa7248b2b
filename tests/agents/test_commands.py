from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_seed_demo_agents_makes_the_three_demo_agents_once() -> None:
    tenant = TenantFactory.create(slug="demo")

    first, second = StringIO(), StringIO()
    call_command("seed_demo_agents", stdout=first)
    call_command("seed_demo_agents", stdout=second)

    agents = Agent.objects.filter(tenant=tenant).order_by("slug")
    assert [(a.slug, a.class_name, a.version) for a in agents] == [
        ("assistant", "chat", 1),
        ("calculator", "tools", 1),
        ("echo", "echo", 1),
    ]
    assert "created echo, assistant, calculator" in first.getvalue()
    assert "created none" in second.getvalue()


def test_seed_demo_agents_refuses_an_unknown_tenant() -> None:
    with pytest.raises(CommandError, match="No tenant 'nowhere'"):
        call_command("seed_demo_agents", "--tenant", "nowhere", stdout=StringIO())
