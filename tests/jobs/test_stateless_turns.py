"""Stateless turns: a message that brings its own chat_history instead of a stored thread (jobs.turns)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent, ModelProvider
from aihub.access.models import Membership
from jobs import services
from jobs.models import Job, JobStatus
from jobs.tasks import run_job
from tests.agents.conftest import loopback_provider, openai_server  # noqa: F401 — fixtures
from tests.agents.factories import AgentFactory
from tests.agents.openai_server import OpenAIServer
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.servers import Stream, http_json
from tests.threads.factories import FileFactory
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db

HISTORY = [
    {"role": "user", "content": "My name is Ada.", "agent": "chatty", "caller_agent": None},
    {
        "role": "assistant",
        "content": [{"type": "text", "text": "Nice to meet you, Ada."}],
        "agent": "chatty",
        "timestamp": "2025-01-01T12:00:00Z",
    },
]


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> APIClient:
    return client_as(membership)


@pytest.fixture
def chatty(membership: Membership, loopback_provider: ModelProvider) -> Agent:  # noqa: F811
    return AgentFactory.create(tenant=membership.tenant, slug="chatty", class_name="chat", model="loopback/gpt-test")


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo", config={"prefix": "echo: "})


def url(agent: Agent, query: str = "") -> str:
    return f"/api/v1/{agent.tenant.slug}/agents/{agent.slug}/messages{query}"


def turn(client: APIClient, agent: Agent, **body: Any) -> dict[str, Any]:
    """Submit, run the job as a worker would, then retry the request with wait=true: the ended turn's answer."""
    body = {"content": "What is my name?", "chat_history": HISTORY, **body}
    key = {"Idempotency-Key": f"turn-{Job.objects.count()}"}
    submitted = client.post(url(agent), body, format="json", headers=key)
    assert submitted.status_code == 202, submitted.content
    run_job(submitted.json()["id"])
    answered = client.post(url(agent, "?wait=true&timeout=5"), body, format="json", headers=key)
    assert answered.status_code == 200, answered.content
    result: dict[str, Any] = answered.json()
    return result


def test_the_model_sees_the_supplied_history_and_the_answer_gives_what_the_turn_added(
    client: APIClient,
    chatty: Agent,
    openai_server: OpenAIServer,  # noqa: F811
) -> None:
    openai_server.reply_text("Your name is Ada.", prompt_tokens=30, completion_tokens=5)

    body = turn(client, chatty)

    assert body["status"] == JobStatus.SUCCEEDED, body["error"]
    (request,) = openai_server.requests
    assert [(m["role"], m["content"]) for m in request.messages] == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]
    mine, reply = body["new_messages"]
    assert (mine["role"], mine["content"], mine["agent"]) == (
        "user",
        [{"type": "text", "text": "What is my name?"}],
        "chatty",
    )
    assert (reply["role"], reply["content"], reply["agent"], reply["caller_agent"]) == (
        "assistant",
        [{"type": "text", "text": "Your name is Ada."}],
        "chatty",
        None,
    )
    assert reply["id"] == body["output"]["message"]
    assert body["usage"]["total_tokens"] == 35
    assert body["cost"] is None  # the loopback model has no price in the catalogue
    assert body["file_ids_map"] == {}


def test_a_stateless_turn_keeps_nothing_of_the_history_and_its_thread_is_never_listed(
    client: APIClient,
    chatty: Agent,
    openai_server: OpenAIServer,  # noqa: F811
) -> None:
    openai_server.reply_text("Your name is Ada.")

    body = turn(client, chatty)

    job = Job.objects.get(pk=body["id"])
    assert "chat_history" not in job.input
    assert not any("My name is Ada." in str(m.content) for m in Message.objects.all())
    assert Message.objects.filter(thread_id=job.thread_id).count() == 2  # this turn's, no more
    thread = Thread.objects.get(pk=job.thread_id)
    assert thread.ephemeral
    tenant = chatty.tenant.slug
    assert client.get(f"/api/v1/{tenant}/threads/").json()["items"] == []
    assert_problem(client.get(f"/api/v1/{tenant}/threads/{thread.pk}/"), 404)
    assert_problem(client.post(f"/api/v1/{tenant}/threads/{thread.pk}/messages/", {"content": "hi"}), 404)
    # The job stays the caller's to read.
    assert client.get(f"/api/v1/{tenant}/jobs/{job.pk}/").json()["status"] == JobStatus.SUCCEEDED


def test_the_final_event_carries_new_messages_usage_cost_and_the_attached_files(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    notes = FileFactory.create(
        tenant=membership.tenant, uploaded_by=membership.user, name="notes.txt", data=b"Ship on Friday."
    )

    body = turn(client, echo, chat_history=[], attachments=[{"file": str(notes.pk)}], content="Read this.")

    assert body["file_ids_map"] == {"notes.txt": str(notes.pk)}
    final = Event.objects.get(job_id=body["id"], type="job.succeeded").data
    assert final["file_ids_map"] == {"notes.txt": str(notes.pk)}
    assert [m["role"] for m in final["new_messages"]] == ["user", "assistant"]
    assert final["new_messages"][1]["content"] == body["new_messages"][1]["content"]
    assert final["new_messages"][1]["id"] == body["new_messages"][1]["id"]
    assert final["usage"] == body["usage"]
    assert final["cost"] == body["cost"] == 0.0  # the offline model is priced, at nothing


def test_store_thread_keeps_the_history_as_a_new_thread_to_continue_on(
    client: APIClient,
    chatty: Agent,
    openai_server: OpenAIServer,  # noqa: F811
) -> None:
    openai_server.reply_text("Your name is Ada.").reply_text("You asked my name.")

    body = turn(client, chatty, store_thread=True)

    thread = Thread.objects.get(pk=body["thread"])
    assert not thread.ephemeral
    assert [m.role for m in Message.objects.filter(thread=thread).order_by("created_at")] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert len(body["new_messages"]) == 2
    tenant = chatty.tenant.slug
    assert [t["id"] for t in client.get(f"/api/v1/{tenant}/threads/").json()["items"]] == [str(thread.pk)]
    # A stateful message on it sees the stored history.
    follow_up = client.post(url(chatty), {"content": "What did I ask?", "thread": str(thread.pk)}, format="json")
    run_job(follow_up.json()["id"])
    assert len(openai_server.requests[-1].messages) == 5


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"chat_history": [{"role": "robot", "content": "hi"}]}, ["chat_history[0].role"]),
        ({"chat_history": [{"role": "user", "content": [{"type": "nope"}]}]}, ["chat_history[0].content[0]"]),
        ({"chat_history": [{"role": "user", "content": "hi", "colour": "red"}]}, ["chat_history[0].colour"]),
        (
            {"chat_history": [{"role": "user", "content": "hi", "timestamp": "yesterday"}]},
            ["chat_history[0].timestamp"],
        ),
        ({"chat_history": {"role": "user"}}, ["chat_history"]),
        ({"chat_history": [], "thread": "7c1d2e3f-1111-4a2b-9c3d-4e5f6a7b8c9d"}, ["chat_history"]),
        ({"store_thread": True}, ["store_thread"]),
    ],
)
def test_a_malformed_history_is_a_400_naming_the_field_and_writes_nothing(
    client: APIClient, membership: Membership, echo: Agent, body: dict[str, Any], fields: list[str]
) -> None:
    if "thread" in body:
        body["thread"] = str(services.job_submit(agent=echo, user=membership.user, content="x")[0].thread_id)
    jobs, threads = Job.objects.count(), Thread.objects.count()

    assert_invalid(client.post(url(echo), {"content": "hi", **body}, format="json"), *fields)

    assert (Job.objects.count(), Thread.objects.count()) == (jobs, threads)


def test_a_history_over_its_bounds_is_refused(client: APIClient, echo: Agent, settings: Any) -> None:
    settings.JOBS_CHAT_HISTORY_MAX_MESSAGES = 2
    settings.JOBS_CHAT_HISTORY_MAX_BYTES = 200
    three = [{"role": "user", "content": "hi"}] * 3
    big = [{"role": "user", "content": "x" * 300}]

    for history in (three, big):
        body = assert_invalid(
            client.post(url(echo), {"content": "hi", "chat_history": history}, format="json"), "chat_history"
        )
        assert "At most" in body["errors"][0]["message"]
    assert not Job.objects.exists()


def test_a_history_cannot_smuggle_in_someone_elses_file(client: APIClient, membership: Membership, echo: Agent) -> None:
    other = MembershipFactory.create(tenant=membership.tenant)
    theirs = FileFactory.create(tenant=membership.tenant, uploaded_by=other.user, name="secret.txt", data=b"s")
    history = [{"role": "user", "content": [{"type": "file", "file_id": str(theirs.pk), "name": "secret.txt"}]}]

    assert_invalid(client.post(url(echo), {"content": "hi", "chat_history": history}, format="json"), "chat_history")
    assert not Job.objects.exists()


def test_the_janitor_purges_an_ended_stateless_turn_but_keeps_its_usage(
    client: APIClient, echo: Agent, settings: Any
) -> None:
    settings.JOBS_STATELESS_RETENTION_SECONDS = 60
    body = turn(client, echo)
    job = Job.objects.get(pk=body["id"])

    assert services.janitor_run(now=timezone.now() + timedelta(seconds=30))["purged"] == 0
    assert services.janitor_run(now=timezone.now() + timedelta(seconds=90))["purged"] == 1

    job.refresh_from_db()
    assert job.input == {"supplied_history": True}
    assert job.output == {}
    assert job.results_purged_at is not None
    assert job.usage["total_tokens"] == body["usage"]["total_tokens"] > 0
    assert not Message.objects.filter(thread_id=job.thread_id).exists()
    assert not Event.objects.filter(thread_id=job.thread_id).exists()
    assert Thread.objects.get(pk=job.thread_id).title == ""
    # Once only.
    assert services.janitor_run(now=timezone.now() + timedelta(seconds=90))["purged"] == 0


def test_a_threads_own_route_takes_no_supplied_history(client: APIClient, membership: Membership, echo: Agent) -> None:
    thread = services.job_submit(agent=echo, user=membership.user, content="x")[0].thread_id
    route = f"/api/v1/{membership.tenant.slug}/threads/{thread}/messages/"

    assert_invalid(client.post(route, {"content": "hi", "chat_history": HISTORY}, format="json"), "chat_history")


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="drives the embedded server, whatever the suite's configuration: run once, in the embedded suite",
)
def test_a_stateless_turn_through_the_real_server_waits_and_streams_with_what_it_added(
    embedded_server: tuple[str, str],
) -> None:
    base, token = embedded_server
    path = "/api/v1/demo/agents/echo/messages"
    body = {"content": "one two", "chat_history": HISTORY}

    status, waited = http_json(f"{base}{path}?wait=true", body=body, token=token)
    assert (status, waited["status"]) == (200, "succeeded"), waited
    assert [m["role"] for m in waited["new_messages"]] == ["user", "assistant"]
    assert waited["usage"]["total_tokens"] > 0 and "cost" in waited and waited["file_ids_map"] == {}

    stream = Stream(base, f"{path}?stream=true", token=token, body=body)
    try:
        frames = stream.until("job.succeeded")
    finally:
        stream.close()
    final = json.loads(frames[-1]["data"])["data"]
    assert [m["role"] for m in final["new_messages"]] == ["user", "assistant"]
    assert final["new_messages"][1]["content"] == waited["new_messages"][1]["content"]
    assert final["usage"]["total_tokens"] == waited["usage"]["total_tokens"]
    assert final["file_ids_map"] == {}
    # Neither turn is on the caller's thread list.
    listed = http_json(f"{base}/api/v1/demo/threads/", token=token)[1]["items"]
    assert waited["thread"] not in {thread["id"] for thread in listed}
