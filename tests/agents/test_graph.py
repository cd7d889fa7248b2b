"""Agent metadata for frontends: conversation starters and quick replies on the agent (validated by the service,
the API and the admin alike), and the agent graph that gives them per agent with the model, the entry points,
the tools with their JSON schemas and the handoff edges, in a fixed number of queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from agents import services
from agents.handoffs import TRANSFER_TOOL
from agents.models import Agent, AgentVersion
from agents.tools import get_tool
from aihub.access.models import Membership, Tenant
from tests.agents.factories import AgentFactory
from tests.agents.test_admin import agent_form, form_errors
from tests.factories import UserFactory
from tests.helpers import ClientAs, assert_invalid

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant(admin_membership: Membership) -> Tenant:
    return admin_membership.tenant


def graph(client_as: ClientAs, membership: Membership) -> dict[str, Any]:
    response = client_as(membership).get(f"/api/v1/{membership.tenant.slug}/agents/graph")
    assert response.status_code == 200, response.content
    return {node["slug"]: node for node in response.json()["nodes"]}


# --- Starters and quick replies on the agent ---------------------------------------------------------------


def test_starters_and_quick_replies_are_stored_stripped_and_versioned(tenant: Tenant) -> None:
    agent = AgentFactory.create(tenant=tenant, conversation_starters=["  What can you do? "], quick_replies=["Yes"])

    changed = services.agent_update(agent=agent, quick_replies=["Yes", "No"])

    assert agent.conversation_starters == ["What can you do?"]
    assert changed.version == 2
    assert AgentVersion.objects.get(agent=agent, version=2).snapshot["quick_replies"] == ["Yes", "No"]


@pytest.mark.parametrize(
    ("starters", "says"),
    [
        (["Hello", "   "], "blank"),
        (["Hello", "Hello "], "repeated"),
        ([f"Prompt {n}" for n in range(11)], "At most 10"),
        (["x" * 301], "300 characters"),
        ("Hello", "list of strings"),
        ([42], "list of strings"),
    ],
)
def test_the_service_refuses_blank_repeated_too_many_or_too_long_starters(
    tenant: Tenant, starters: Any, says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        AgentFactory.create(tenant=tenant, conversation_starters=starters)

    assert says in " ".join(refused.value.message_dict["conversation_starters"])
    assert not Agent.objects.exists()


def test_the_api_sets_starters_and_names_the_field_it_refuses(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant
) -> None:
    client = client_as(admin_membership)
    base = f"/api/v1/{tenant.slug}/agents/"

    created = client.post(
        base,
        {"slug": "helper", "class_name": "echo", "conversation_starters": ["Hi!"], "quick_replies": ["Thanks"]},
        format="json",
    )

    assert created.status_code == 201, created.content
    assert (created.json()["conversation_starters"], created.json()["quick_replies"]) == (["Hi!"], ["Thanks"])
    assert_invalid(client.patch(base + "helper/", {"quick_replies": ["Ok", "Ok"]}, format="json"), "quick_replies")
    blank = client.patch(base + "helper/", {"conversation_starters": [""]}, format="json")
    assert_invalid(blank, "conversation_starters")
    assert Agent.objects.get(slug="helper").quick_replies == ["Thanks"]


def test_the_admin_edits_starters_one_per_line_and_shows_the_services_errors() -> None:
    operator = UserFactory.create(is_staff=True, is_superuser=True)
    site = Client()
    site.force_login(operator)
    agent = AgentFactory.create(slug="helper", class_name="chat", conversation_starters=["Old"])
    change_url = reverse("admin:agents_agent_change", args=[agent.pk])
    assert "Old" in site.get(change_url).content.decode()
    form = agent_form(agent.tenant, name=agent.name, config="{}", system_prompt="")

    saved = site.post(change_url, {**form, "conversation_starters": "What can you do?\n\n  Tell me a joke  \n"})
    refused = site.post(change_url, {**form, "quick_replies": "Yes\nYes"})

    assert saved.status_code == 302, form_errors(saved)
    agent.refresh_from_db()
    assert agent.conversation_starters == ["What can you do?", "Tell me a joke"]
    assert "repeated" in form_errors(refused)
    agent.refresh_from_db()
    assert agent.quick_replies == []


# --- The graph ---------------------------------------------------------------------------------------------


def test_the_graph_gives_each_agent_its_model_entry_point_tools_with_schemas_handoffs_and_starters(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant
) -> None:
    triage = AgentFactory.create(
        tenant=tenant,
        slug="triage",
        class_name="tools",
        model="",
        tools=["calculator"],
        conversation_starters=["I have a question about my invoice"],
        quick_replies=["Thanks"],
    )
    billing = AgentFactory.create(tenant=tenant, slug="billing", class_name="echo", model="")
    services.handoff_create(source=triage, target=billing, description="Invoices.")

    nodes = graph(client_as, admin_membership)

    assert nodes["triage"]["model"] == "offline/aihub-offline-1"  # a model class on the default model
    assert nodes["billing"]["model"] == ""  # echo needs none
    assert (nodes["triage"]["is_entry_point"], nodes["billing"]["is_entry_point"]) == (True, False)
    assert nodes["triage"]["conversation_starters"] == ["I have a question about my invoice"]
    assert nodes["triage"]["quick_replies"] == ["Thanks"]
    assert nodes["triage"]["handoffs"] == ["billing"]
    assert nodes["billing"]["handoffs"] == []
    schemas = {tool["name"]: tool for tool in nodes["triage"]["tool_schemas"]}
    assert list(schemas) == nodes["triage"]["tools"] == ["calculator", TRANSFER_TOOL]
    calculator = get_tool("calculator")
    assert calculator is not None
    assert schemas["calculator"]["parameters"] == calculator.parameters_schema
    target = schemas[TRANSFER_TOOL]["parameters"]["properties"]["agent"]
    assert target.get("enum", [target.get("const")]) == ["billing"]  # one target: pydantic writes a const
    assert "billing: Invoices." in schemas[TRANSFER_TOOL]["description"]


def test_a_disabled_agent_is_no_entry_point_and_no_transfer_target(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant
) -> None:
    triage = AgentFactory.create(tenant=tenant, slug="triage", class_name="tools", tools=["calculator"])
    billing = AgentFactory.create(tenant=tenant, slug="billing")
    services.handoff_create(source=triage, target=billing)
    services.agent_update(agent=billing, enabled=False)
    AgentFactory.create(tenant=tenant, slug="off", enabled=False)

    nodes = graph(client_as, admin_membership)

    assert nodes["off"]["is_entry_point"] is False
    assert nodes["triage"]["tools"] == ["calculator"]
    assert nodes["triage"]["handoffs"] == ["billing"]  # the edge is there; the model is not offered it


def test_the_graph_costs_the_same_queries_for_one_agent_or_many(
    client_as: ClientAs,
    admin_membership: Membership,
    tenant: Tenant,
    django_assert_max_num_queries: Any,
    django_assert_num_queries: Any,
) -> None:
    first = AgentFactory.create(tenant=tenant, slug="a0", class_name="tools", tools=["calculator"])
    client = client_as(admin_membership)
    url = f"/api/v1/{tenant.slug}/agents/graph"
    client.get(url)  # authentication caches warm
    with django_assert_max_num_queries(50) as one:
        client.get(url)
    for n in range(1, 6):
        agent = AgentFactory.create(tenant=tenant, slug=f"a{n}", class_name="tools", tools=["calculator"])
        services.handoff_create(source=first, target=agent)

    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(url)

    assert len(response.json()["nodes"]) == 6
