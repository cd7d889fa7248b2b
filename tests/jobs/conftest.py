from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents.models import Agent
from aihub.access.models import Tenant
from tests.agents.factories import AgentFactory
from tests.factories import TenantFactory, UserFactory


@pytest.fixture
def tenant(db: None) -> Tenant:
    return TenantFactory.create()


@pytest.fixture
def user(db: None) -> User:
    return UserFactory.create()


@pytest.fixture
def echo(tenant: Tenant) -> Agent:
    """An echo agent: answers with the message it got, one word per chunk."""
    return AgentFactory.create(tenant=tenant, slug="echo")


@pytest.fixture
def slow_echo(tenant: Tenant) -> Agent:
    """An echo agent that pauses before every chunk, so a run can be interrupted midway."""
    return AgentFactory.create(tenant=tenant, slug="slow-echo", config={"chunk_delay_seconds": 0.05})
