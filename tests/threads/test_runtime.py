"""The runtime view of a thread (SwarmForge's session runtime): the active agent, the active job and its step, the
human-in-the-loop requests waiting for an answer, the handoff chain and the state's version, in pinned queries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents import services as agent_services
from agents.models import Agent
from agents.tools import TOOLS, ToolContext, tool
from aihub.access.models import Membership
from jobs import services as job_services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.helpers import ClientAs
from tests.jobs.helpers import run_now
from threads import services
from threads.models import Thread

pytestmark = pytest.mark.django_db


def runtime(client_as: ClientAs, membership: Membership, thread: Thread | Any) -> dict[str, Any]:
    response = client_as(membership).get(f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/runtime")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def triage(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="triage", class_name="tools", tools=["set_state"])


def delete_record(context: ToolContext, record_id: str) -> str:
    """Delete a record (a person approves every call)."""
    return f"deleted {record_id}"


@pytest.fixture
def approver(membership: Membership) -> Iterator[Agent]:
    # Registered for this test only (other modules list the registry); the offline model calls it on "use ...",
    # and a tool that needs approval pauses the job in requires_action.
    tool(requires_approval=True)(delete_record)
    yield AgentFactory.create(tenant=membership.tenant, slug="approver", class_name="tools", tools=["delete_record"])
    TOOLS.pop("delete_record", None)


def submit(agent: Agent, membership: Membership, content: str, thread: Thread | None = None) -> Job:
    job, _ = job_services.job_submit(agent=agent, user=membership.user, content=content, thread=thread)
    return job


def test_a_new_thread_has_no_agent_job_or_handoffs_yet(client_as: ClientAs, membership: Membership) -> None:
    thread = services.thread_create(tenant=membership.tenant, created_by=membership.user)

    body = runtime(client_as, membership, thread)

    assert body == {
        "thread": str(thread.pk),
        "active_agent": None,
        "active_job": None,
        "queued_jobs": 0,
        "pending_actions": [],
        "handoffs": [],
        "state": {},
        "state_version": 0,
        "variables": {},
        "last_event_id": 0,
        "latest_checkpoint": None,
    }


def test_after_a_handoff_the_target_is_active_and_the_chain_names_both_agents(
    client_as: ClientAs, membership: Membership, triage: Agent
) -> None:
    billing = AgentFactory.create(tenant=membership.tenant, slug="billing")
    agent_services.handoff_create(source=triage, target=billing)
    first = run_now(submit(triage, membership, 'use set_state {"key": "customer_id", "value": 42}'))
    job = run_now(submit(triage, membership, 'use transfer_to_agent {"agent": "billing"}', first.thread))

    body = runtime(client_as, membership, job.thread)

    assert body["active_agent"] == {"id": str(billing.pk), "slug": "billing", "name": billing.name}
    assert [(h["from"], h["to"]) for h in body["handoffs"]] == [("triage", "billing")]
    assert body["active_job"] is None
    assert body["state"] == body["variables"] == {"customer_id": 42}
    state_event = job.thread.events.filter(type="state.updated").get()
    assert body["state_version"] == state_event.sequence
    assert body["latest_checkpoint"]["job"] == str(job.pk)
    assert body["last_event_id"] == Thread.objects.get(pk=job.thread_id).last_sequence


def test_a_job_waiting_for_approval_is_the_active_job_with_its_pending_request(
    client_as: ClientAs, membership: Membership, approver: Agent
) -> None:
    paused = run_now(submit(approver, membership, 'use delete_record {"record_id": "r-1"}'))
    assert paused.status == JobStatus.REQUIRES_ACTION

    body = runtime(client_as, membership, paused.thread)

    assert body["active_agent"]["slug"] == "approver"
    assert body["active_job"] == {
        "id": str(paused.pk),
        "status": "requires_action",
        "agent": "approver",
        "step": "job.requires_action",
    }
    [pending] = body["pending_actions"]
    assert (pending["job"], pending["request"]["type"]) == (str(paused.pk), "tool_approval")


def test_the_runtime_view_costs_a_fixed_number_of_queries(
    client_as: ClientAs, membership: Membership, triage: Agent, django_assert_num_queries: Any
) -> None:
    job = run_now(submit(triage, membership, 'use set_state {"key": "a", "value": 1}'))
    for n in range(3):
        run_now(submit(triage, membership, f"turn {n}", job.thread))
    running = job_services.job_claim(job_id=submit(triage, membership, "now", job.thread).pk, worker="w")
    assert running is not None
    client = client_as(membership)
    url = f"/api/v1/{membership.tenant.slug}/threads/{job.thread_id}/runtime"
    client.get(url)  # the token and the member's roles are then remembered, as on a running server

    # The thread (visibility), its active jobs with their agents, the active job's step, the handoff chain, the
    # state's version, the latest checkpoint, the active agent.
    with django_assert_num_queries(7):
        response = client.get(url)

    assert response.json()["active_job"]["step"] == "job.started"
