"""A client-chosen job id on every route that starts a job: a retry gets the same job and writes nothing; the
id reused by someone else, or for another agent, is a conflict."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from aihub.access.models import Membership
from jobs import services
from jobs.models import Job
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from threads import services as thread_services
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db

JOB_ID = uuid.UUID("0f8e5a52-4a51-4b8e-9d53-5b2f0c6f3c11")

# Each route that starts a job: (client, membership, agent slug, body extras, headers) -> response.
Post = Callable[..., Any]


def post_job(client: APIClient, membership: Membership, agent: str, extra: dict[str, Any], **headers: str) -> Any:
    url = f"/api/v1/{membership.tenant.slug}/jobs/"
    return client.post(url, {"agent": agent, "input": "hello", **extra}, format="json", headers=headers)


def post_thread_message(
    client: APIClient, membership: Membership, agent: str, extra: dict[str, Any], **headers: str
) -> Any:
    # The caller's own thread, made on the first message: a retry is sent to the same thread.
    thread = Thread.objects.filter(tenant=membership.tenant, created_by=membership.user).first()
    if thread is None:
        thread = thread_services.thread_create(tenant=membership.tenant, created_by=membership.user, title="t")
    url = f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/messages/"
    return client.post(url, {"agent": agent, "content": "hello", **extra}, format="json", headers=headers)


def post_agent_message(
    client: APIClient, membership: Membership, agent: str, extra: dict[str, Any], **headers: str
) -> Any:
    url = f"/api/v1/{membership.tenant.slug}/agents/{agent}/messages"
    return client.post(url, {"content": "hello", **extra}, format="json", headers=headers)


ROUTES = pytest.mark.parametrize(
    "post", [post_job, post_thread_message, post_agent_message], ids=["jobs", "thread-messages", "agent-messages"]
)


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


def written() -> tuple[int, int, int]:
    return Job.objects.count(), Message.objects.count(), Event.objects.count()


@ROUTES
def test_a_job_gets_the_id_the_client_chose(
    post: Post, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    response = post(client_as(membership), membership, "echo", {"job_id": str(JOB_ID)})

    assert response.status_code == 202, response.content
    assert response.json()["id"] == str(JOB_ID)
    assert Job.objects.get().pk == JOB_ID


@ROUTES
def test_a_retry_with_the_same_job_id_returns_that_job_and_writes_nothing(
    post: Post, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    client = client_as(membership)
    first = post(client, membership, "echo", {"job_id": str(JOB_ID)})
    before = written()

    retry = post(client, membership, "echo", {"job_id": str(JOB_ID)})

    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["id"] == first.json()["id"] == str(JOB_ID)
    assert retry.json()["thread"] == first.json()["thread"]
    assert written() == before


@ROUTES
def test_a_job_id_used_by_someone_else_is_a_conflict(
    post: Post, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    post(client_as(membership), membership, "echo", {"job_id": str(JOB_ID)})
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    before = written()

    response = post(client_as(colleague), colleague, "echo", {"job_id": str(JOB_ID)})

    assert "job id" in assert_problem(response, 409)["detail"]
    assert Job.objects.get().created_by == membership.user
    # The thread-messages route makes the colleague's thread before posting; no job, message or event more.
    assert written() == before


@ROUTES
def test_a_job_id_used_for_another_agent_is_a_conflict(
    post: Post, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="other")
    client = client_as(membership)
    post(client, membership, "echo", {"job_id": str(JOB_ID)})

    response = post(client, membership, "other", {"job_id": str(JOB_ID)})

    assert "job id" in assert_problem(response, 409)["detail"]
    assert Job.objects.count() == 1


@ROUTES
def test_a_job_id_used_in_another_tenant_is_a_conflict(post: Post, client_as: ClientAs, echo: Agent) -> None:
    elsewhere = MembershipFactory.create(roles=["member"])
    AgentFactory.create(tenant=elsewhere.tenant, slug="echo")
    services.job_submit(agent=echo, user=elsewhere.user, content="hi", job_id=JOB_ID)

    response = post(client_as(elsewhere), elsewhere, "echo", {"job_id": str(JOB_ID)})

    assert "job id" in assert_problem(response, 409)["detail"]


@ROUTES
def test_a_job_id_must_be_a_uuid(post: Post, client_as: ClientAs, membership: Membership, echo: Agent) -> None:
    response = post(client_as(membership), membership, "echo", {"job_id": "order-17"})

    assert_invalid(response, "job_id")
    assert not Job.objects.exists()


@ROUTES
def test_an_idempotency_key_still_works_beside_job_ids(
    post: Post, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    client = client_as(membership)
    first = post(client, membership, "echo", {}, **{"Idempotency-Key": "order-17"})

    retry = post(client, membership, "echo", {"job_id": str(JOB_ID)}, **{"Idempotency-Key": "order-17"})

    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1


def test_the_service_returns_the_earlier_job_for_a_retried_job_id(echo: Agent, membership: Membership) -> None:
    job, created = services.job_submit(agent=echo, user=membership.user, content="hi", job_id=JOB_ID)
    before = written()

    again, created_again = services.job_submit(agent=echo, user=membership.user, content="other", job_id=JOB_ID)

    assert (created, created_again) == (True, False)
    assert again.pk == job.pk == JOB_ID
    assert written() == before
