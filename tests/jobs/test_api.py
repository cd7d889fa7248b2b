"""The /jobs routes: submit in the background, list with filters, status and result, cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from aihub.access import services as access_services
from aihub.access.models import Membership
from jobs import services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import run_now
from tests.threads.factories import ThreadFactory
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db


def jobs_url(membership: Membership, *rest: str) -> str:
    return "/".join([f"/api/v1/{membership.tenant.slug}/jobs", *rest]) + ("" if rest and rest[-1] == "cancel" else "/")


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> Any:
    return client_as(membership)


def submit(client: Any, membership: Membership, **body: Any) -> Any:
    return client.post(jobs_url(membership), {"agent": "echo", "input": "hello", **body}, format="json")


# --- Submitting -----------------------------------------------------------------------------------------------


def test_a_member_submits_a_job_in_the_background(client: Any, membership: Membership, echo: Agent) -> None:
    response = submit(
        client,
        membership,
        input=[{"type": "text", "text": "hello there"}],
        additional_instructions="Be brief.",
        context={"customer": "c-42"},
        expires_in_seconds=600,
    )

    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert response["Location"] == jobs_url(membership, str(job.pk))
    assert body["status"] == "queued"
    assert body["agent"] == "echo"
    assert body["agent_version"] == echo.version
    assert body["thread"] == str(job.thread_id)
    assert body["input"] == {
        "content": [{"type": "text", "text": "hello there"}],
        "additional_instructions": "Be brief.",
        "context": {"customer": "c-42"},
    }
    assert body["input_message"] == job.input["message"]
    assert body["attempts"] == 0
    assert job.created_by == membership.user
    assert job.expires_at is not None
    assert timedelta(seconds=590) < job.expires_at - timezone.now() <= timedelta(seconds=600)
    assert Thread.objects.get(pk=job.thread_id).members.filter(user=membership.user).exists()


def test_a_job_continues_a_thread_the_member_takes_part_in(client: Any, membership: Membership, echo: Agent) -> None:
    thread = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)

    response = submit(client, membership, thread=str(thread.pk))

    assert response.status_code == 202, response.content
    assert response.json()["thread"] == str(thread.pk)


def test_a_busy_thread_rejects_by_default_and_enqueues_on_request(
    client: Any, membership: Membership, echo: Agent
) -> None:
    first = submit(client, membership).json()

    busy = submit(client, membership, thread=first["thread"])
    queued = submit(client, membership, thread=first["thread"], busy="enqueue")

    assert_problem(busy, 409)
    assert queued.status_code == 202
    assert Job.objects.filter(thread_id=first["thread"], status=JobStatus.QUEUED).count() == 2


def test_the_same_idempotency_key_returns_the_same_job_and_writes_nothing(
    client: Any, membership: Membership, echo: Agent
) -> None:
    body = {"agent": "echo", "input": "hi"}
    first = client.post(jobs_url(membership), body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    counts = (Job.objects.count(), Message.objects.count(), Event.objects.count())

    again = client.post(jobs_url(membership), body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert (Job.objects.count(), Message.objects.count(), Event.objects.count()) == counts


def test_an_overlong_idempotency_key_is_refused(client: Any, membership: Membership, echo: Agent) -> None:
    response = client.post(
        jobs_url(membership), {"agent": "echo", "input": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201
    )

    assert_invalid(response, "Idempotency-Key")
    assert not Job.objects.exists()


def test_an_unknown_agent_is_not_found(client: Any, membership: Membership, echo: Agent) -> None:
    assert_problem(submit(client, membership, agent="nobody"), 404)


def test_an_agent_of_another_tenant_is_not_found(client: Any, membership: Membership) -> None:
    AgentFactory.create(slug="echo")  # in a tenant of its own

    assert_problem(submit(client, membership), 404)


def test_a_disabled_agent_is_a_conflict(client: Any, membership: Membership, echo: Agent) -> None:
    agent_services.agent_update(agent=echo, enabled=False)

    body = assert_problem(submit(client, membership), 409)

    assert "disabled" in body["detail"]
    assert not Job.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"input": [{"type": "text"}]}, ["input[0].text"]),
        ({"input": [{"type": "sound", "data": "x"}]}, ["input[0]"]),
        ({"input": []}, ["input"]),
        ({"input": 42}, ["input"]),
        ({"busy": "sometimes"}, ["busy"]),
        ({"thread": "not-a-uuid"}, ["thread"]),
        ({"expires_in_seconds": 0}, ["expires_in_seconds"]),
        ({"expires_at": "2000-01-01T00:00:00Z"}, ["expires_at"]),
        ({"expires_in_seconds": 60, "expires_at": "2999-01-01T00:00:00Z"}, ["expires_at"]),
        ({"context": "not an object"}, ["context"]),
        ({"webhook": "https://example.com"}, ["webhook"]),
    ],
)
def test_bad_input_is_a_validation_problem_naming_the_fields(
    client: Any, membership: Membership, echo: Agent, body: dict[str, Any], fields: list[str]
) -> None:
    assert_invalid(submit(client, membership, **body), *fields)
    assert not Job.objects.exists()


def test_a_missing_agent_and_input_are_named(client: Any, membership: Membership) -> None:
    assert_invalid(client.post(jobs_url(membership), {}, format="json"), "agent", "input")


def test_a_thread_the_member_cannot_see_is_not_found(client: Any, membership: Membership, echo: Agent) -> None:
    someone_elses = ThreadFactory.create(tenant=membership.tenant)

    assert_problem(submit(client, membership, thread=str(someone_elses.pk)), 404)
    assert not Job.objects.exists()


# --- Reading --------------------------------------------------------------------------------------------------


def test_a_finished_job_shows_its_result_usage_timings_and_attempts(
    client: Any, membership: Membership, echo: Agent
) -> None:
    job = run_now(Job.objects.get(pk=submit(client, membership, input="hello world").json()["id"]))

    response = client.get(jobs_url(membership, str(job.pk)))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"]["content"] == [{"type": "text", "text": "hello world"}]
    assert body["output"]["message"] == str(Message.objects.get(job_id=job.pk, role="assistant").pk)
    assert body["usage"] == {
        "input_tokens": 2,
        "output_tokens": 2,
        "total_tokens": 4,
        "cost": 0.0,
        "currency": "USD",
        "model": "offline/aihub-offline-1",
    }
    assert body["error"] is None
    assert body["attempts"] == 1
    assert body["agent_version"] == echo.version
    assert body["created_at"] <= body["started_at"] <= body["finished_at"]


def test_a_failed_job_shows_its_problem(client: Any, membership: Membership, echo: Agent) -> None:
    job = Job.objects.get(pk=submit(client, membership).json()["id"])
    services.job_claim(job_id=job.pk, worker="lost")
    Job.objects.filter(pk=job.pk).update(max_attempts=1, heartbeat_at=timezone.now() - timedelta(days=1))
    services.janitor_run()

    body = client.get(jobs_url(membership, str(job.pk))).json()

    assert body["status"] == "failed"
    assert body["error"]["type"] == "urn:aihub:problem:worker-lost"
    assert body["error"]["status"] == 503


def test_jobs_are_listed_newest_first_in_the_envelope(client: Any, membership: Membership, echo: Agent) -> None:
    ids = [submit(client, membership, input=f"n{n}").json()["id"] for n in range(3)]

    body = client.get(jobs_url(membership)).json()

    assert body["total"] == 3
    assert body["offset"] == 0
    assert [item["id"] for item in body["items"]] == ids[::-1]


def test_the_list_filters_by_status_agent_and_thread(client: Any, membership: Membership, echo: Agent) -> None:
    other_agent = AgentFactory.create(tenant=membership.tenant, slug="other")
    done = submit(client, membership).json()
    run_now(Job.objects.get(pk=done["id"]))
    queued = submit(client, membership).json()
    by_other = submit(client, membership, agent=other_agent.slug).json()

    def ids(**params: str) -> list[str]:
        response = client.get(jobs_url(membership), params)
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert ids(status="succeeded") == [done["id"]]
    assert ids(status="queued") == [by_other["id"], queued["id"]]
    assert ids(agent="other") == [by_other["id"]]
    assert ids(thread=queued["thread"]) == [queued["id"]]


def test_a_bad_filter_is_a_validation_problem(client: Any, membership: Membership) -> None:
    assert_invalid(client.get(jobs_url(membership), {"status": "sleeping", "thread": "x"}), "status", "thread")


def test_a_member_sees_only_jobs_of_threads_they_can_see(
    client: Any, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    theirs = submit(client_as(colleague), membership).json()
    mine = submit(client, membership).json()

    assert [item["id"] for item in client.get(jobs_url(membership)).json()["items"]] == [mine["id"]]
    assert_problem(client.get(jobs_url(membership, theirs["id"])), 404)
    assert_problem(client.post(jobs_url(membership, theirs["id"], "cancel"), {}, format="json"), 404)


def test_an_admin_sees_every_job_of_the_tenant(
    client: Any, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    admin = MembershipFactory.create(tenant=membership.tenant, roles=["admin"])
    theirs = submit(client, membership).json()

    assert client_as(admin).get(jobs_url(membership, theirs["id"])).status_code == 200
    assert client_as(admin).get(jobs_url(membership)).json()["total"] == 1


def test_a_job_of_another_tenant_is_not_found(client: Any, membership: Membership, echo: Agent) -> None:
    elsewhere = MembershipFactory.create(user=membership.user, roles=["admin"])
    agent = AgentFactory.create(tenant=elsewhere.tenant)
    job, _ = services.job_submit(agent=agent, user=membership.user, content="hi")

    assert_problem(client.get(jobs_url(membership, str(job.pk))), 404)
    assert_problem(client.post(jobs_url(membership, str(job.pk), "cancel"), {}, format="json"), 404)
    assert client.get(jobs_url(membership)).json()["total"] == 0


def test_a_member_without_a_jobs_rule_sees_no_jobs_and_cannot_submit(
    client: Any, client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    access_services.role_create(
        tenant=membership.tenant, name="chat-only", rules=["aihub.user.agents.>", "aihub.user.threads.>"]
    )
    chatter = MembershipFactory.create(tenant=membership.tenant, roles=["chat-only"])
    theirs, _ = services.job_submit(agent=echo, user=chatter.user, content="hi")
    chatter_client = client_as(chatter)

    assert_problem(chatter_client.get(jobs_url(membership, str(theirs.pk))), 404)
    assert chatter_client.get(jobs_url(membership)).json()["items"] == []
    assert_problem(submit(chatter_client, membership), 404)
    assert_problem(chatter_client.post(jobs_url(membership, str(theirs.pk), "cancel"), {}, format="json"), 404)


def test_an_unknown_job_is_not_found(client: Any, membership: Membership) -> None:
    assert_problem(client.get(jobs_url(membership, "00000000-0000-4000-8000-000000000000")), 404)


def test_jobs_need_credentials(api_client: Any, membership: Membership) -> None:
    assert_problem(api_client.get(jobs_url(membership)), 401)


# --- Cancelling -----------------------------------------------------------------------------------------------


def test_cancelling_a_queued_job_ends_it(client: Any, membership: Membership, echo: Agent) -> None:
    job = submit(client, membership).json()

    response = client.post(jobs_url(membership, job["id"], "cancel"), {"mode": "immediate"}, format="json")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_cancelling_a_running_job_asks_it_to_stop(client: Any, membership: Membership, echo: Agent) -> None:
    job = Job.objects.get(pk=submit(client, membership).json()["id"])
    services.job_claim(job_id=job.pk, worker="w1")

    response = client.post(jobs_url(membership, str(job.pk), "cancel"), {"mode": "after_turn"}, format="json")

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", "after_turn")


def test_cancel_defaults_to_immediate(client: Any, membership: Membership, echo: Agent) -> None:
    job = Job.objects.get(pk=submit(client, membership).json()["id"])
    services.job_claim(job_id=job.pk, worker="w1")

    response = client.post(jobs_url(membership, str(job.pk), "cancel"), {}, format="json")

    assert response.json()["cancel_requested"] == "immediate"


def test_cancelling_a_finished_job_is_a_conflict(client: Any, membership: Membership, echo: Agent) -> None:
    job = run_now(Job.objects.get(pk=submit(client, membership).json()["id"]))

    body = assert_problem(client.post(jobs_url(membership, str(job.pk), "cancel"), {}, format="json"), 409)

    assert "succeeded" in body["detail"]


def test_a_bad_cancel_mode_is_a_validation_problem(client: Any, membership: Membership, echo: Agent) -> None:
    job = submit(client, membership).json()

    assert_invalid(client.post(jobs_url(membership, job["id"], "cancel"), {"mode": "gently"}, format="json"), "mode")
    assert Job.objects.get(pk=job["id"]).status == JobStatus.QUEUED


# --- The schema -----------------------------------------------------------------------------------------------


def test_every_jobs_route_is_in_the_schema_with_examples(api_client: Any) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]

    submit_op = paths["/api/v1/{tenant}/jobs/"]["post"]
    assert submit_op["requestBody"]["content"]["application/json"]["examples"]
    assert submit_op["responses"]["202"]["content"]["application/json"]["examples"]
    assert "409" in submit_op["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in submit_op["parameters"])
    assert paths["/api/v1/{tenant}/jobs/"]["get"]
    assert paths["/api/v1/{tenant}/jobs/{id}/"]["get"]["responses"]["200"]["content"]["application/json"]["examples"]
    cancel_op = paths["/api/v1/{tenant}/jobs/{id}/cancel"]["post"]
    assert cancel_op["requestBody"]["content"]["application/json"]["examples"]
    assert "409" in cancel_op["responses"]
