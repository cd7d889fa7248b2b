"""Multi-agent handoffs: edges between agents of one tenant, the ``transfer_to_agent`` tool they give the source,
the ``handoff`` event that makes the target answer the thread's next message, and the agent graph.

Jobs run on the test's thread, as a worker runs them; the offline model calls any offered tool on
``use <name> {json arguments}``, so a handoff is triggered deterministically.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from agents import services
from agents.handoffs import TRANSFER_TOOL, handoff_tool
from agents.models import Agent, AgentVersion, Handoff
from agents.tools import ToolContext, ToolError
from aihub.access import services as access_services
from aihub.access.models import Membership, Tenant
from jobs import services as job_services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import assistant_messages, run_now
from threads.models import Event, Thread, ThreadMember

pytestmark = pytest.mark.django_db


def transfer(target: str, **arguments: Any) -> str:
    return f"use {TRANSFER_TOOL} " + json.dumps({"agent": target, **arguments})


@pytest.fixture
def tenant(admin_membership: Membership) -> Tenant:
    return admin_membership.tenant


@pytest.fixture
def triage(tenant: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant, slug="triage", class_name="tools", tools=["set_state"])


@pytest.fixture
def billing(tenant: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant, slug="billing", config={"prefix": "billing: "})


@pytest.fixture
def sales(tenant: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant, slug="sales", config={"prefix": "sales: "})


def submit(agent: Agent, user: User, content: str, thread: Thread | None = None) -> Job:
    job, _ = job_services.job_submit(agent=agent, user=user, content=content, thread=thread)
    return job


def tool_completed(job: Job) -> dict[str, Any]:
    [event] = Event.objects.filter(job_id=job.pk, type="tool.completed")
    return dict(event.data)


def messages_url(tenant: Tenant, thread: Thread) -> str:
    return f"/api/v1/{tenant.slug}/threads/{thread.pk}/messages/"


# --- The tool ---------------------------------------------------------------------------------------------


def test_an_agent_with_edges_is_offered_transfer_to_agent_listing_exactly_its_enabled_targets(
    triage: Agent, billing: Agent, sales: Agent
) -> None:
    services.handoff_create(source=triage, target=sales, description="Buying more seats.")
    services.handoff_create(source=triage, target=billing, required_state_keys=["customer_id"])
    disabled = AgentFactory.create(tenant=triage.tenant, slug="archive")
    services.handoff_create(source=triage, target=disabled)
    services.agent_update(agent=disabled, enabled=False)

    tool = handoff_tool(agent_id=triage.pk)

    assert tool is not None
    schema = tool.openai_schema()["function"]
    assert schema["name"] == "transfer_to_agent"
    assert schema["parameters"]["properties"]["agent"]["enum"] == ["billing", "sales"]
    assert schema["parameters"]["required"] == ["agent"]
    assert "- sales: Buying more seats." in schema["description"]
    assert "customer_id" in schema["description"]
    assert handoff_tool(agent_id=billing.pk) is None


def test_a_handoff_through_a_real_job_makes_the_target_answer_the_next_message(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant, triage: Agent, billing: Agent
) -> None:
    services.handoff_create(source=triage, target=billing, description="Invoices.")
    user = admin_membership.user

    job = run_now(submit(triage, user, transfer("billing", reason="an invoice question")))

    assert job.status == JobStatus.SUCCEEDED, job.error
    types = list(Event.objects.filter(job_id=job.pk).order_by("sequence").values_list("type", flat=True))
    assert types.index("tool.started") < types.index("handoff") < types.index("tool.completed")
    handoff = Event.objects.get(thread_id=job.thread_id, type="handoff")
    assert handoff.data == {
        "from": "triage",
        "to": "billing",
        "from_agent": str(triage.pk),
        "to_agent": str(billing.pk),
        "reason": "an invoice question",
    }
    assert (handoff.job_id, handoff.agent_id) == (job.pk, triage.pk)
    assert tool_completed(job)["is_error"] is False
    assert ThreadMember.objects.filter(thread_id=job.thread_id, agent_id=billing.pk).exists()

    # No agent named: the thread's current agent, the target, answers.
    response = client_as(admin_membership).post(
        messages_url(tenant, job.thread), {"content": "Where is my invoice?"}, format="json"
    )

    assert response.status_code == 202, response.content
    assert response.json()["agent"] == "billing"
    answered = run_now(Job.objects.get(pk=response.json()["id"]))
    assert answered.agent_id == billing.pk
    assert assistant_messages(answered)[0].content == [{"type": "text", "text": "billing: Where is my invoice?"}]


def test_a_handoff_whose_required_state_keys_are_missing_is_a_tool_error_the_model_reads(
    admin_membership: Membership, triage: Agent, billing: Agent
) -> None:
    services.handoff_create(source=triage, target=billing, required_state_keys=["customer_id"])
    user = admin_membership.user

    refused = run_now(submit(triage, user, transfer("billing")))

    assert refused.status == JobStatus.SUCCEEDED, refused.error
    completed = tool_completed(refused)
    assert completed["is_error"] is True
    assert "customer_id" in completed["output"]
    # The model read the refusal (the offline model restates a tool's result).
    assert "customer_id" in assistant_messages(refused)[0].content[0]["text"]
    assert not Event.objects.filter(thread_id=refused.thread_id, type="handoff").exists()
    thread = refused.thread

    stored = run_now(submit(triage, user, 'use set_state {"key": "customer_id", "value": 42}', thread=thread))
    assert stored.status == JobStatus.SUCCEEDED
    handed = run_now(submit(triage, user, transfer("billing"), thread=thread))

    assert tool_completed(handed)["is_error"] is False
    assert Event.objects.filter(thread_id=thread.pk, type="handoff", job_id=handed.pk).exists()


def test_a_transfer_to_an_agent_that_is_no_target_is_refused_by_the_tools_schema(
    admin_membership: Membership, triage: Agent, billing: Agent, sales: Agent
) -> None:
    services.handoff_create(source=triage, target=billing)

    job = run_now(submit(triage, admin_membership.user, transfer("sales")))

    completed = tool_completed(job)
    assert completed["is_error"] is True
    assert completed["output"]["error"] == "invalid arguments"
    assert completed["output"]["errors"][0]["field"] == "agent"
    assert not Event.objects.filter(thread_id=job.thread_id, type="handoff").exists()


def test_an_edge_removed_after_the_run_began_refuses_the_handoff(
    admin_membership: Membership, triage: Agent, billing: Agent
) -> None:
    edge = services.handoff_create(source=triage, target=billing)
    tool = handoff_tool(agent_id=triage.pk)
    assert tool is not None
    services.handoff_delete(handoff=edge)
    thread = Thread.objects.create(tenant=triage.tenant)
    context = ToolContext(tenant_id=triage.tenant_id, thread_id=thread.pk, agent_id=triage.pk)
    with pytest.raises(ToolError, match="no agent 'billing' to hand off to"):
        tool.call(context, {"agent": "billing"})


def test_the_agent_named_in_the_request_still_answers_after_a_handoff(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant, triage: Agent, billing: Agent
) -> None:
    services.handoff_create(source=triage, target=billing)
    job = run_now(submit(triage, admin_membership.user, transfer("billing")))

    response = client_as(admin_membership).post(
        messages_url(tenant, job.thread), {"agent": "triage", "content": "Back to you"}, format="json"
    )

    assert response.status_code == 202, response.content
    assert response.json()["agent"] == "triage"


# --- Edges: the services ----------------------------------------------------------------------------------


def test_an_edge_to_the_agent_itself_is_refused(triage: Agent) -> None:
    with pytest.raises(ValidationError, match="itself"):
        services.handoff_create(source=triage, target=triage)
    assert not Handoff.objects.exists()


def test_an_edge_to_an_agent_of_another_tenant_is_refused(triage: Agent) -> None:
    elsewhere = AgentFactory.create(tenant=TenantFactory.create(), slug="billing")

    with pytest.raises(ValidationError, match="same tenant"):
        services.handoff_create(source=triage, target=elsewhere)
    assert not Handoff.objects.exists()


def test_a_second_edge_to_the_same_target_is_refused(triage: Agent, billing: Agent) -> None:
    services.handoff_create(source=triage, target=billing)

    with pytest.raises(ValidationError, match="already hands off"):
        services.handoff_create(source=triage, target=billing)


def test_required_state_keys_are_trimmed_names_without_duplicates(triage: Agent, billing: Agent) -> None:
    edge = services.handoff_create(source=triage, target=billing, required_state_keys=[" plan ", "plan", "id"])

    assert edge.required_state_keys == ["plan", "id"]
    with pytest.raises(ValidationError, match="non-empty"):
        services.handoff_update(handoff=edge, required_state_keys=["ok", " "])


# --- The API ----------------------------------------------------------------------------------------------


def handoffs_url(agent: Agent, *rest: str) -> str:
    return "/".join([f"/api/v1/{agent.tenant.slug}/agents/{agent.slug}/handoffs", *rest])


def graph_url(tenant: Tenant) -> str:
    return f"/api/v1/{tenant.slug}/agents/graph"


def test_an_admin_manages_an_agents_edges_through_the_api(
    client_as: ClientAs, admin_membership: Membership, triage: Agent, billing: Agent
) -> None:
    client = client_as(admin_membership)

    created = client.post(
        handoffs_url(triage) + "/",
        {"target": "billing", "description": "Invoices.", "required_state_keys": ["customer_id"]},
        format="json",
    )

    assert created.status_code == 201, created.content
    assert created.json() | {"created_at": None} == {
        "source": "triage",
        "target": "billing",
        "description": "Invoices.",
        "required_state_keys": ["customer_id"],
        "created_at": None,
    }
    assert [e["target"] for e in client.get(handoffs_url(triage) + "/").json()] == ["billing"]
    changed = client.patch(handoffs_url(triage, "billing"), {"required_state_keys": []}, format="json")
    assert changed.status_code == 200, changed.content
    assert Handoff.objects.get().required_state_keys == []
    assert client.get(handoffs_url(triage, "billing")).json()["description"] == "Invoices."
    assert client.delete(handoffs_url(triage, "billing")).status_code == 204
    assert not Handoff.objects.exists()
    assert_problem(client.get(handoffs_url(triage, "billing")), 404)


def test_the_api_refuses_an_edge_to_itself_another_tenants_agent_or_a_second_one(
    client_as: ClientAs, admin_membership: Membership, triage: Agent, billing: Agent
) -> None:
    client = client_as(admin_membership)
    AgentFactory.create(tenant=TenantFactory.create(), slug="elsewhere")
    services.handoff_create(source=triage, target=billing)

    assert_invalid(client.post(handoffs_url(triage) + "/", {"target": "triage"}, format="json"), "target")
    assert_invalid(client.post(handoffs_url(triage) + "/", {"target": "elsewhere"}, format="json"), "target")
    assert_invalid(client.post(handoffs_url(triage) + "/", {"target": "billing"}, format="json"), "target")
    assert_invalid(client.post(handoffs_url(triage) + "/", {"target": "billing", "ends": "x"}, format="json"), "ends")
    assert Handoff.objects.count() == 1


def member_with_rules(tenant: Tenant, *rules: str) -> Membership:
    access_services.role_create(tenant=tenant, name="custom", rules=list(rules))
    return MembershipFactory.create(tenant=tenant, roles=["custom"])


def test_changing_edges_needs_admin_rights_on_the_source(
    client_as: ClientAs, tenant: Tenant, triage: Agent, billing: Agent
) -> None:
    user = client_as(member_with_rules(tenant, "aihub.user.agents.>"))

    assert_problem(user.post(handoffs_url(triage) + "/", {"target": "billing"}, format="json"), 403)
    assert not Handoff.objects.exists()
    services.handoff_create(source=triage, target=billing)
    assert_problem(user.delete(handoffs_url(triage, "billing")), 403)
    assert user.get(handoffs_url(triage) + "/").status_code == 200


def test_the_graph_lists_agents_with_their_tools_and_the_edges(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant, triage: Agent, billing: Agent
) -> None:
    services.handoff_create(source=triage, target=billing, description="Invoices.", required_state_keys=["id"])

    response = client_as(admin_membership).get(graph_url(tenant))

    assert response.status_code == 200, response.content
    body = response.json()
    nodes = {node["slug"]: node for node in body["nodes"]}
    assert nodes.keys() == {"triage", "billing"}
    assert nodes["triage"]["tools"] == ["set_state", "transfer_to_agent"]
    assert nodes["billing"]["tools"] == []
    assert nodes["billing"]["class_name"] == "echo"
    assert body["edges"] == [
        {"source": "triage", "target": "billing", "description": "Invoices.", "required_state_keys": ["id"]}
    ]


def test_the_graph_hides_agents_the_caller_cannot_see_and_their_edges(
    client_as: ClientAs, tenant: Tenant, triage: Agent, billing: Agent, sales: Agent
) -> None:
    services.handoff_create(source=triage, target=billing)
    services.handoff_create(source=sales, target=triage)
    AgentFactory.create(tenant=TenantFactory.create(), slug="elsewhere")
    member = member_with_rules(tenant, "aihub.user.agents.triage", "aihub.user.agents.sales")

    body = client_as(member).get(graph_url(tenant)).json()

    assert [node["slug"] for node in body["nodes"]] == ["sales", "triage"]
    assert body["edges"] == [{"source": "sales", "target": "triage", "description": "", "required_state_keys": []}]
    assert_problem(client_as(member).get(handoffs_url(billing) + "/"), 404)


def test_a_thread_handed_to_an_agent_the_caller_cannot_see_asks_them_to_name_one(
    client_as: ClientAs, admin_membership: Membership, tenant: Tenant, triage: Agent, billing: Agent
) -> None:
    services.handoff_create(source=triage, target=billing)
    member = member_with_rules(tenant, "aihub.user.agents.triage", "aihub.user.threads.>")
    job = run_now(submit(triage, member.user, transfer("billing")))

    response = client_as(member).post(messages_url(tenant, job.thread), {"content": "Hello?"}, format="json")

    body = assert_invalid(response, "agent")
    assert "handed off" in body["errors"][0]["message"]


# --- The admin --------------------------------------------------------------------------------------------


@pytest.fixture
def admin_site() -> Client:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    return client


def change_form(agent: Agent, **handoffs: str) -> dict[str, Any]:
    form = {
        "name": agent.name,
        "description": agent.description,
        "class_name": agent.class_name,
        "config": json.dumps(agent.config),
        "model": agent.model,
        "system_prompt": agent.system_prompt,
        "tools": list(agent.tools),
        "enabled": "on",
        # The read-only versions inline posts its rows too.
        "versions-TOTAL_FORMS": "1",
        "versions-INITIAL_FORMS": "1",
        "versions-0-id": str(AgentVersion.objects.get(agent=agent).pk),
        "versions-0-agent": str(agent.pk),
        "handoffs-TOTAL_FORMS": "1",
        "handoffs-INITIAL_FORMS": "0",
    }
    form.update({f"handoffs-0-{name}": value for name, value in handoffs.items()})
    return form


def test_an_operator_adds_an_edge_inline_on_the_agent(admin_site: Client, triage: Agent, billing: Agent) -> None:
    url = reverse("admin:agents_agent_change", args=[triage.pk])
    form = change_form(triage, target=str(billing.pk), description="Invoices.", required_state_keys="id, plan")

    response = admin_site.post(url, form)

    assert response.status_code == 302, response.context and response.context["inline_admin_formsets"]
    edge = Handoff.objects.get()
    assert (edge.source, edge.target, edge.required_state_keys) == (triage, billing, ["id", "plan"])
    assert "billing" in admin_site.get(url).content.decode()


def test_the_admin_refuses_an_edge_to_itself_or_to_another_tenant(admin_site: Client, triage: Agent) -> None:
    url = reverse("admin:agents_agent_change", args=[triage.pk])
    elsewhere = AgentFactory.create(tenant=TenantFactory.create(), slug="elsewhere")

    for target in (triage, elsewhere):
        response = admin_site.post(url, change_form(triage, target=str(target.pk)))
        assert response.status_code == 200
        assert "target" in str(response.context["inline_admin_formsets"][0].formset.errors)
    assert not Handoff.objects.exists()
