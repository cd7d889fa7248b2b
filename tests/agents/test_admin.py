"""The agents admin: every save goes through agents.services (a new version each), and provider keys stay hidden."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from agents.models import Agent, AgentVersion, ModelProvider
from aihub.access.models import Tenant
from tests.agents.factories import AgentFactory
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db

STORED_KEY = "sk-stored-secret-key-1234"


@pytest.fixture
def operator() -> User:
    return UserFactory.create(username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_site(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def url(model: type[Any], view: str, *args: Any) -> str:
    return reverse(f"admin:agents_{model._meta.model_name}_{view}", args=args)


def agent_form(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    form = {
        "tenant": str(tenant.pk),
        "slug": "helper",
        "name": "Helper",
        "description": "",
        "class_name": "chat",
        "config": '{"temperature": 0.5}',
        "model": "offline/aihub-offline-1",
        "system_prompt": "Be kind.",
        "enabled": "on",
        # The read-only versions inline still posts its management form.
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        # The handoffs inline's management form (an agent's edges; none here).
        "handoffs-TOTAL_FORMS": "0",
        "handoffs-INITIAL_FORMS": "0",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def form_errors(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.context["adminform"].form.errors)


def test_the_agent_pages_load(admin_site: Client) -> None:
    agent = AgentFactory.create(class_name="tools", tools=["calculator"])

    for page in (url(Agent, "changelist"), url(Agent, "add"), url(Agent, "change", agent.pk)):
        assert admin_site.get(page).status_code == 200, page
    change = admin_site.get(url(Agent, "change", agent.pk)).content.decode()
    assert "calculator" in change
    assert "&quot;max_steps&quot;: 5" in change  # the config, pretty-printed JSON


def test_adding_an_agent_creates_version_one_by_the_operator(admin_site: Client, operator: User) -> None:
    tenant = TenantFactory.create()

    response = admin_site.post(url(Agent, "add"), agent_form(tenant))

    assert response.status_code == 302, form_errors(response)
    agent = Agent.objects.get(tenant=tenant, slug="helper")
    assert agent.config == {
        "temperature": 0.5,
        "max_tokens": None,
        "history_window": 20,
        "vision": False,
        "memory": False,
        "memory_top_k": 5,
    }
    assert AgentVersion.objects.get(agent=agent).created_by == operator


def test_a_config_that_fails_the_class_schema_is_a_form_error(admin_site: Client) -> None:
    tenant = TenantFactory.create()

    response = admin_site.post(url(Agent, "add"), agent_form(tenant, config='{"temperature": 7}'))

    assert "temperature" in form_errors(response)
    assert not Agent.objects.exists()


def test_tools_on_a_class_without_tools_are_a_form_error(admin_site: Client) -> None:
    response = admin_site.post(url(Agent, "add"), agent_form(TenantFactory.create(), tools=["calculator"]))

    assert "uses no tools" in form_errors(response)


def test_changing_an_agent_makes_a_new_version_listed_on_its_page(admin_site: Client, operator: User) -> None:
    agent = AgentFactory.create(slug="helper", class_name="chat", system_prompt="Be kind.")
    form = agent_form(agent.tenant, system_prompt="Be brief.", config="{}", name=agent.name)
    version = AgentVersion.objects.get(agent=agent)
    form.update({"versions-TOTAL_FORMS": "1", "versions-INITIAL_FORMS": "1", "versions-0-id": str(version.pk)})
    form["versions-0-agent"] = str(agent.pk)

    response = admin_site.post(url(Agent, "change", agent.pk), form)

    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert (agent.version, agent.system_prompt) == (2, "Be brief.")
    assert AgentVersion.objects.get(agent=agent, version=2).created_by == operator
    assert "Be kind." in admin_site.get(url(Agent, "change", agent.pk)).content.decode()


def test_the_disable_action_goes_through_the_service(admin_site: Client) -> None:
    agent = AgentFactory.create()

    admin_site.post(
        url(Agent, "changelist"), {"action": "disable_agents", "_selected_action": [str(agent.pk)]}, follow=True
    )

    agent.refresh_from_db()
    assert (agent.enabled, agent.version) == (False, 2)


def test_a_provider_page_never_shows_the_stored_key(admin_site: Client) -> None:
    provider = ModelProvider.objects.create(name="vllm", base_url="http://127.0.0.1:8000/v1", api_key=STORED_KEY)

    for page in (url(ModelProvider, "changelist"), url(ModelProvider, "change", provider.pk)):
        body = admin_site.get(page).content.decode()
        assert STORED_KEY not in body
    assert "A key is stored" in admin_site.get(url(ModelProvider, "change", provider.pk)).content.decode()


def provider_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "name": "vllm",
        "kind": "openai",
        "base_url": "http://127.0.0.1:8000/v1",
        "new_api_key": "",
        "api_key_env": "",
        "timeout_seconds": "30",
        "max_retries": "2",
        "enabled": "on",
    }
    form.update(overrides)
    return form


def test_saving_a_provider_with_a_blank_key_keeps_the_stored_key(admin_site: Client) -> None:
    provider = ModelProvider.objects.create(name="vllm", base_url="http://127.0.0.1:8000/v1", api_key=STORED_KEY)

    response = admin_site.post(url(ModelProvider, "change", provider.pk), provider_form(timeout_seconds="5"))

    assert response.status_code == 302
    provider.refresh_from_db()
    assert (provider.api_key, provider.timeout_seconds) == (STORED_KEY, 5.0)


def test_a_provider_key_is_replaced_or_removed_from_the_form(admin_site: Client) -> None:
    provider = ModelProvider.objects.create(name="vllm", base_url="http://127.0.0.1:8000/v1", api_key=STORED_KEY)

    admin_site.post(url(ModelProvider, "change", provider.pk), provider_form(new_api_key="sk-new"))
    provider.refresh_from_db()
    assert provider.api_key == "sk-new"

    admin_site.post(url(ModelProvider, "change", provider.pk), provider_form(clear_api_key="on"))
    provider.refresh_from_db()
    assert provider.api_key == ""


def test_adding_a_provider_stores_the_key_it_was_given(admin_site: Client) -> None:
    response = admin_site.post(url(ModelProvider, "add"), provider_form(new_api_key="sk-first"))

    assert response.status_code == 302
    assert ModelProvider.objects.get(name="vllm").api_key == "sk-first"
