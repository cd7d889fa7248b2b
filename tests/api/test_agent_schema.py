"""Per-agent paths in the OpenAPI description: a tenant's members get one documented path per agent, following
agents as they come and go; the public document names no agent."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from agents import registry
from agents import services as agent_services
from agents.models import Agent
from aihub.access import services as access_services
from aihub.access.models import Membership
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory, TenantFactory
from tests.helpers import ClientAs, assert_problem, bearer

pytestmark = pytest.mark.django_db


def tenant_schema(client: APIClient, tenant: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/{tenant}/schema/")
    assert response.status_code == 200, response.content
    return dict(response.json())


def agent_path(tenant: str, slug: str) -> str:
    return f"/api/v1/{tenant}/agents/{slug}/messages"


@pytest.fixture
def support(membership: Membership) -> Agent:
    return AgentFactory.create(
        tenant=membership.tenant, slug="support", name="Support", description="Answers customers.", tools=[]
    )


def test_each_enabled_agent_has_its_own_documented_path(
    client_as: ClientAs, membership: Membership, support: Agent
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="retired", enabled=False)
    tenant = membership.tenant.slug

    schema = tenant_schema(client_as(membership), tenant)

    assert agent_path(tenant, "support") in schema["paths"]
    assert agent_path(tenant, "retired") not in schema["paths"]
    operation = schema["paths"][agent_path(tenant, "support")]["post"]
    assert operation["summary"] == "Talk to Support"
    assert "Answers customers." in operation["description"]
    assert "Class `echo`" in operation["description"]
    assert operation["x-aihub-agent"] == {
        "slug": "support",
        "class": "echo",
        "version": 1,
        "model": support.model,
        "tools": [],
    }
    assert not [p for p in operation["parameters"] if p["in"] == "path"]  # tenant and slug are in the path
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"content", "thread", "context", "busy"} <= set(request["properties"])
    # The generic route is still there, and the whole document is valid OpenAPI.
    assert "/api/v1/{tenant}/agents/{slug}/messages" in schema["paths"]
    validate_schema(schema)


def test_the_paths_follow_agents_being_created_changed_disabled_and_deleted(
    client_as: ClientAs, membership: Membership, support: Agent
) -> None:
    client, tenant = client_as(membership), membership.tenant.slug
    assert agent_path(tenant, "sales") not in tenant_schema(client, tenant)["paths"]

    sales = AgentFactory.create(tenant=membership.tenant, slug="sales", name="Sales")
    assert tenant_schema(client, tenant)["paths"][agent_path(tenant, "sales")]["post"]["summary"] == "Talk to Sales"

    agent_services.agent_update(agent=sales, name="Sales desk")
    assert (
        tenant_schema(client, tenant)["paths"][agent_path(tenant, "sales")]["post"]["summary"] == "Talk to Sales desk"
    )

    agent_services.agent_update(agent=Agent.objects.get(pk=sales.pk), enabled=False)
    assert agent_path(tenant, "sales") not in tenant_schema(client, tenant)["paths"]

    agent_services.agent_delete(agent=support)
    assert agent_path(tenant, "support") not in tenant_schema(client, tenant)["paths"]


def test_the_public_document_names_no_agent(api_client: APIClient, membership: Membership) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="zebra-desk", name="Zebra Desk", description="Stripes.")
    response = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert b"zebra" not in response.content.lower()
    assert b"Stripes" not in response.content


def test_only_members_get_a_tenants_document(api_client: APIClient, membership: Membership, support: Agent) -> None:
    tenant = membership.tenant.slug
    assert_problem(api_client.get(f"/api/v1/{tenant}/schema/"), 401)
    outsider = MembershipFactory.create(tenant=TenantFactory.create())
    client = bearer(access_services.api_token_create(user=outsider.user, name="t")[1])
    assert_problem(client.get(f"/api/v1/{tenant}/schema/"), 404)


def test_a_member_sees_only_the_agents_its_roles_name(db: None) -> None:
    tenant = TenantFactory.create()
    AgentFactory.create(tenant=tenant, slug="public")
    AgentFactory.create(tenant=tenant, slug="private")
    access_services.role_create(tenant=tenant, name="public-only", rules=["aihub.user.agents.public"])
    member = MembershipFactory.create(tenant=tenant, roles=["public-only"])
    client = bearer(access_services.api_token_create(user=member.user, name="t")[1])

    paths = tenant_schema(client, tenant.slug)["paths"]

    assert agent_path(tenant.slug, "public") in paths
    assert agent_path(tenant.slug, "private") not in paths


# --- The request schema comes from the agent's class ------------------------------------------------------------


@pytest.fixture
def ticketing_class(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A plug-in class whose tools read a ticket id from the request's context."""
    installed = [
        EntryPoint(name="ticketing", value="tests.api.agent_classes:TicketingAgent", group=registry.ENTRY_POINT_GROUP)
    ]
    monkeypatch.setattr(
        registry, "entry_points", lambda *, group: installed if group == registry.ENTRY_POINT_GROUP else []
    )
    registry.reset_plug_ins()
    yield
    registry.reset_plug_ins()


def test_a_class_that_describes_its_context_gets_that_context_in_its_request_schema(
    client_as: ClientAs, membership: Membership, support: Agent, ticketing_class: None
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="tickets", class_name="ticketing")
    tenant = membership.tenant.slug

    schema = tenant_schema(client_as(membership), tenant)

    def request_of(slug: str) -> dict[str, Any]:
        operation = schema["paths"][agent_path(tenant, slug)]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return dict(schema["components"]["schemas"][ref.rsplit("/", 1)[1]])

    context = request_of("tickets")["properties"]["context"]
    assert context["properties"]["ticket_id"]["type"] == "integer"
    assert context["required"] == ["ticket_id"]
    # A class without a Context model takes any object there.
    generic = request_of("support")["properties"]["context"]
    assert generic["type"] == "object"
    assert generic["additionalProperties"] is True
    assert "properties" not in generic
    validate_schema(schema)


def test_swagger_ui_of_a_tenant_reads_that_tenants_document(api_client: APIClient) -> None:
    # The page is public and names no agent; the document it fetches is the members-only one.
    response = api_client.get("/api/v1/acme/docs/")
    assert response.status_code == 200
    assert b'url: "/api/v1/acme/schema/"' in response.content
