"""The threads API: threads, members, messages, the event log and state, over HTTP with API tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Agent
from aihub.access import services as access_services
from aihub.access.models import Membership
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory, UserFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.threads.factories import FileFactory, ThreadFactory
from threads import services
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db


def threads_url(membership: Membership, *rest: Any) -> str:
    """``/api/v1/<tenant>/threads/<rest...>``; a trailing "/" is added except for the state route."""
    path = "/".join(str(part) for part in rest)
    base = f"/api/v1/{membership.tenant.slug}/threads/"
    if not path:
        return base
    return base + path + ("" if path.endswith("state") else "/")


@pytest.fixture
def client(membership: Membership, client_as: ClientAs) -> APIClient:
    """The plain member's client."""
    return client_as(membership)


@pytest.fixture
def agent(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo-bot")


@pytest.fixture
def thread(membership: Membership, agent: Agent) -> Thread:
    """The member's thread with the echo agent in it."""
    return services.thread_create(
        tenant=membership.tenant, created_by=membership.user, title="Mine", agent_ids=[agent.pk]
    )


@pytest.fixture
def colleague(membership: Membership) -> Membership:
    """Another plain member of the same tenant, not in the member's threads."""
    return MembershipFactory.create(tenant=membership.tenant, roles=["member"])


@pytest.fixture
def tenant_admin(membership: Membership) -> Membership:
    return MembershipFactory.create(tenant=membership.tenant, roles=["admin"])


def event_types(thread: Thread) -> list[str]:
    return list(Event.objects.filter(thread=thread).order_by("sequence").values_list("type", flat=True))


# --- Threads ---------------------------------------------------------------------------------------------


def test_a_member_starts_a_thread_and_becomes_its_member(client: APIClient, membership: Membership) -> None:
    response = client.post(threads_url(membership), {"title": "Refund", "metadata": {"channel": "web"}}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["title"] == "Refund"
    assert body["metadata"] == {"channel": "web"}
    assert body["created_by"] == {"id": membership.user.pk, "username": membership.user.username}
    assert body["last_sequence"] == 0
    thread = Thread.objects.get(pk=body["id"])
    assert thread.tenant == membership.tenant
    assert list(thread.members.values_list("user_id", flat=True)) == [membership.user.pk]


def test_a_thread_needs_no_body_at_all(client: APIClient, membership: Membership) -> None:
    response = client.post(threads_url(membership), {}, format="json")

    assert response.status_code == 201
    assert response.json()["title"] == ""


def test_starting_a_thread_with_bad_fields_names_each_of_them(client: APIClient, membership: Membership) -> None:
    response = client.post(
        threads_url(membership), {"title": "x" * 301, "metadata": [1], "colour": "red"}, format="json"
    )

    assert_invalid(response, "title", "metadata")
    response = client.post(threads_url(membership), {"colour": "red"}, format="json")
    assert_invalid(response, "colour")


def test_the_list_shows_only_the_callers_threads_newest_first(
    client: APIClient, membership: Membership, colleague: Membership
) -> None:
    older = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)
    newer = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)
    ThreadFactory.create(tenant=membership.tenant, created_by=colleague.user)
    ThreadFactory.create(created_by=membership.user)  # another tenant

    body = client.get(threads_url(membership)).json()

    assert [item["id"] for item in body["items"]] == [str(newer.pk), str(older.pk)]
    assert (body["total"], body["offset"]) == (2, 0)


def test_a_thread_admin_lists_every_thread_of_the_tenant(
    membership: Membership, tenant_admin: Membership, client_as: ClientAs
) -> None:
    ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)
    ThreadFactory.create(tenant=membership.tenant, created_by=None)

    body = client_as(tenant_admin).get(threads_url(membership)).json()

    assert body["total"] == 2


def test_the_list_filters_by_agent(client: APIClient, membership: Membership, thread: Thread) -> None:
    ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)

    with_agent = client.get(threads_url(membership), {"agent": "echo-bot"}).json()
    with_unknown_agent = client.get(threads_url(membership), {"agent": "nobody"}).json()

    assert [item["id"] for item in with_agent["items"]] == [str(thread.pk)]
    assert with_unknown_agent["items"] == []


def test_a_member_reads_its_thread(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = client.get(threads_url(membership, thread.pk))

    assert response.status_code == 200
    assert response.json()["id"] == str(thread.pk)


def test_a_thread_of_someone_else_is_not_found_not_forbidden(
    membership: Membership, colleague: Membership, thread: Thread, client_as: ClientAs
) -> None:
    other = client_as(colleague)

    for response in [
        other.get(threads_url(membership, thread.pk)),
        other.patch(threads_url(membership, thread.pk), {"title": "mine now"}, format="json"),
        other.delete(threads_url(membership, thread.pk)),
        other.get(threads_url(membership, thread.pk, "members")),
        other.post(threads_url(membership, thread.pk, "members"), {"user": colleague.user.username}, format="json"),
        other.get(threads_url(membership, thread.pk, "messages")),
        other.post(threads_url(membership, thread.pk, "messages"), {"content": "hi"}, format="json"),
        other.get(threads_url(membership, thread.pk, "events")),
        other.get(threads_url(membership, thread.pk, "state")),
        other.patch(threads_url(membership, thread.pk, "state"), {"state": {"a": 1}}, format="json"),
    ]:
        assert_problem(response, 404)
    assert not Message.objects.filter(thread=thread).exists()
    assert Thread.objects.get(pk=thread.pk).title == "Mine"


def test_a_thread_of_another_tenant_is_not_found(client: APIClient, membership: Membership) -> None:
    elsewhere = MembershipFactory.create(user=membership.user)
    foreign = ThreadFactory.create(tenant=elsewhere.tenant, created_by=membership.user)

    assert_problem(client.get(threads_url(membership, foreign.pk)), 404)
    assert_problem(client.get(threads_url(membership, foreign.pk, "events")), 404)
    assert client.get(threads_url(elsewhere, foreign.pk)).status_code == 200


def test_an_unknown_thread_is_not_found(client: APIClient, membership: Membership) -> None:
    assert_problem(client.get(threads_url(membership, "0f8e5a52-4a51-4b8e-9d53-5b2f0c6f3c11")), 404)


def test_a_caller_without_thread_rules_can_neither_see_nor_start_threads(
    membership: Membership, client_as: ClientAs
) -> None:
    access_services.role_create(tenant=membership.tenant, name="agents-only", rules=["aihub.user.agents.>"])
    limited = MembershipFactory.create(tenant=membership.tenant, roles=["agents-only"])
    ThreadFactory.create(tenant=membership.tenant, created_by=limited.user)
    client = client_as(limited)

    assert client.get(threads_url(membership)).json()["total"] == 0
    assert_problem(client.post(threads_url(membership), {"title": "x"}, format="json"), 404)


def test_renaming_a_thread_records_thread_updated(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = client.patch(
        threads_url(membership, thread.pk), {"title": "Renamed", "metadata": {"k": "v"}}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["title"], response.json()["metadata"]) == ("Renamed", {"k": "v"})
    assert response.json()["last_sequence"] == 1
    event = Event.objects.get(thread=thread)
    assert (event.type, event.data) == ("thread.updated", {"title": "Renamed", "metadata": {"k": "v"}})


def test_renaming_with_bad_fields_is_a_clear_problem(client: APIClient, membership: Membership, thread: Thread) -> None:
    assert_invalid(client.patch(threads_url(membership, thread.pk), {"metadata": "text"}, format="json"), "metadata")
    assert_invalid(client.patch(threads_url(membership, thread.pk), {"state": {}}, format="json"), "state")


def test_the_creator_deletes_a_thread(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = client.delete(threads_url(membership, thread.pk))

    assert response.status_code == 204
    assert not Thread.objects.filter(pk=thread.pk).exists()


def test_another_member_of_the_thread_may_not_delete_it(
    membership: Membership, colleague: Membership, thread: Thread, client_as: ClientAs
) -> None:
    services.thread_member_add(thread=thread, user=colleague.user)

    response = client_as(colleague).delete(threads_url(membership, thread.pk))

    assert_problem(response, 403)
    assert Thread.objects.filter(pk=thread.pk).exists()


def test_a_thread_admin_deletes_any_thread(
    membership: Membership, tenant_admin: Membership, thread: Thread, client_as: ClientAs
) -> None:
    assert client_as(tenant_admin).delete(threads_url(membership, thread.pk)).status_code == 204
    assert not Thread.objects.filter(pk=thread.pk).exists()


# --- Members ---------------------------------------------------------------------------------------------


def test_members_lists_users_and_agents(client: APIClient, membership: Membership, thread: Thread) -> None:
    body = client.get(threads_url(membership, thread.pk, "members")).json()

    assert body["total"] == 2
    user, agent = body["items"]
    assert (user["kind"], user["user"]["username"], user["agent"]) == ("user", membership.user.username, None)
    assert (agent["kind"], agent["user"], agent["agent"]["slug"]) == ("agent", None, "echo-bot")


def test_adding_a_tenant_member_lets_them_see_the_thread(
    client: APIClient, membership: Membership, colleague: Membership, thread: Thread, client_as: ClientAs
) -> None:
    url = threads_url(membership, thread.pk, "members")

    first = client.post(url, {"user": colleague.user.username}, format="json")
    again = client.post(url, {"user": colleague.user.username}, format="json")

    assert first.status_code == 201, first.content
    assert first.json()["user"]["username"] == colleague.user.username
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert client_as(colleague).get(threads_url(membership, thread.pk)).status_code == 200


def test_only_members_of_the_tenant_can_be_added(client: APIClient, membership: Membership, thread: Thread) -> None:
    outsider = UserFactory.create()

    response = client.post(threads_url(membership, thread.pk, "members"), {"user": outsider.username}, format="json")

    assert_invalid(response, "user")
    assert not thread.members.filter(user=outsider).exists()


def test_adding_an_agent(client: APIClient, membership: Membership, thread: Thread) -> None:
    helper = AgentFactory.create(tenant=membership.tenant, slug="helper")

    response = client.post(threads_url(membership, thread.pk, "members"), {"agent": "helper"}, format="json")

    assert response.status_code == 201
    assert response.json()["agent"] == {"id": str(helper.pk), "slug": "helper", "name": helper.name}


def test_an_agent_of_another_tenant_or_unknown_is_not_found(
    client: APIClient, membership: Membership, thread: Thread
) -> None:
    AgentFactory.create(slug="elsewhere")
    url = threads_url(membership, thread.pk, "members")

    assert_problem(client.post(url, {"agent": "elsewhere"}, format="json"), 404)
    assert_problem(client.post(url, {"agent": "nobody"}, format="json"), 404)


def test_an_agent_the_caller_may_not_see_is_not_found(membership: Membership, client_as: ClientAs) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="secret")
    access_services.role_create(
        tenant=membership.tenant, name="support", rules=["aihub.user.threads.>", "aihub.user.agents.echo-bot"]
    )
    limited = MembershipFactory.create(tenant=membership.tenant, roles=["support"])
    own = ThreadFactory.create(tenant=membership.tenant, created_by=limited.user)

    response = client_as(limited).post(threads_url(membership, own.pk, "members"), {"agent": "secret"}, format="json")

    assert_problem(response, 404)


def test_a_member_is_a_user_or_an_agent_not_both(client: APIClient, membership: Membership, thread: Thread) -> None:
    url = threads_url(membership, thread.pk, "members")

    assert_invalid(client.post(url, {"user": "a", "agent": "b"}, format="json"), "")
    assert_invalid(client.post(url, {}, format="json"), "")


# --- Messages --------------------------------------------------------------------------------------------


def post_message(client: APIClient, membership: Membership, thread: Thread, body: Any, **extra: Any) -> Any:
    query = extra.pop("query", "")
    return client.post(threads_url(membership, thread.pk, "messages") + query, body, format="json", **extra)


def test_a_message_starts_a_job_of_the_agent(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = post_message(client, membership, thread, {"agent": "echo-bot", "content": "Hello"})

    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    message = Message.objects.get(thread=thread)
    assert (body["status"], body["thread"], body["agent"]) == ("queued", str(thread.pk), "echo-bot")
    assert body["message"] == str(message.pk)
    assert message.content == [{"type": "text", "text": "Hello"}]
    assert (message.role, message.author) == ("user", membership.user)
    assert job.created_by == membership.user
    assert event_types(thread) == ["message.created", "job.queued"]
    assert body["links"] == {
        "job": f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/",
        "thread": f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/",
        "events": f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/events/?after=1",
    }


def test_the_threads_only_agent_answers_when_none_is_named(
    client: APIClient, membership: Membership, thread: Thread
) -> None:
    response = post_message(client, membership, thread, {"content": "Hello"})

    assert response.status_code == 202
    assert response.json()["agent"] == "echo-bot"


def test_the_agent_must_be_named_when_the_thread_has_none_or_several(
    client: APIClient, membership: Membership, thread: Thread
) -> None:
    empty = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)
    services.thread_member_add(thread=thread, agent_id=AgentFactory.create(tenant=membership.tenant).pk)

    assert_invalid(post_message(client, membership, empty, {"content": "Hi"}), "agent")
    assert_invalid(post_message(client, membership, thread, {"content": "Hi"}), "agent")


def test_a_named_agent_joins_the_thread(client: APIClient, membership: Membership, agent: Agent) -> None:
    empty = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)

    assert post_message(client, membership, empty, {"agent": "echo-bot", "content": "Hi"}).status_code == 202
    assert empty.members.filter(agent_id=agent.pk).exists()


def test_what_the_message_carries_reaches_the_job(
    client: APIClient, membership: Membership, thread: Thread, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    file_id = str(FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user).pk)
    response = post_message(
        client,
        membership,
        thread,
        {
            "content": [{"type": "text", "text": "Summarise"}, {"type": "file", "file_id": file_id}],
            "additional_instructions": "Be brief.",
            "context": {"customer": "c-1042"},
            "expires_in_seconds": 600,
        },
    )

    job = Job.objects.get(pk=response.json()["id"])
    assert job.input["content"] == [
        {"type": "text", "text": "Summarise"},
        {"type": "file", "file_id": file_id, "name": "", "media_type": ""},
    ]
    assert job.input["additional_instructions"] == "Be brief."
    assert job.input["context"] == {"customer": "c-1042"}
    assert job.expires_at is not None
    assert 590 < (job.expires_at - job.created_at).total_seconds() <= 600


def test_a_retry_with_the_same_idempotency_key_returns_the_same_job(
    client: APIClient, membership: Membership, thread: Thread
) -> None:
    first = post_message(client, membership, thread, {"content": "Hello"}, HTTP_IDEMPOTENCY_KEY="order-1042")
    retry = post_message(client, membership, thread, {"content": "Hello"}, HTTP_IDEMPOTENCY_KEY="order-1042")

    assert first.status_code == 202
    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert Job.objects.filter(thread=thread).count() == 1
    assert Message.objects.filter(thread=thread).count() == 1
    assert event_types(thread) == ["message.created", "job.queued"]


def test_an_overlong_idempotency_key_is_refused(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = post_message(client, membership, thread, {"content": "Hello"}, HTTP_IDEMPOTENCY_KEY="k" * 201)

    assert_invalid(response, "Idempotency-Key")


def test_a_busy_thread_rejects_a_message_by_default(client: APIClient, membership: Membership, thread: Thread) -> None:
    post_message(client, membership, thread, {"content": "First"})

    response = post_message(client, membership, thread, {"content": "Second"})

    body = assert_problem(response, 409)
    assert "active job" in body["detail"]
    assert Job.objects.filter(thread=thread).count() == 1
    assert Message.objects.filter(thread=thread).count() == 1


def test_a_busy_thread_queues_a_message_on_request(client: APIClient, membership: Membership, thread: Thread) -> None:
    post_message(client, membership, thread, {"content": "First"})

    response = post_message(client, membership, thread, {"content": "Second", "busy": "enqueue"})

    assert response.status_code == 202
    assert Job.objects.filter(thread=thread, status=JobStatus.QUEUED).count() == 2


def test_interrupting_cancels_the_active_job(client: APIClient, membership: Membership, thread: Thread) -> None:
    first = post_message(client, membership, thread, {"content": "First"}).json()

    response = post_message(client, membership, thread, {"content": "Second", "busy": "interrupt"})

    assert response.status_code == 202
    assert Job.objects.get(pk=first["id"]).status == JobStatus.CANCELLED


def test_a_disabled_agent_is_a_conflict(
    client: APIClient, membership: Membership, agent: Agent, thread: Thread
) -> None:
    agent_services.agent_update(agent=agent, enabled=False)

    response = post_message(client, membership, thread, {"content": "Hello"})

    assert "disabled" in assert_problem(response, 409)["detail"]
    assert not Message.objects.filter(thread=thread).exists()


def test_an_unknown_agent_is_not_found(client: APIClient, membership: Membership, thread: Thread) -> None:
    assert_problem(post_message(client, membership, thread, {"agent": "nobody", "content": "Hello"}), 404)


@pytest.mark.parametrize(
    ("content", "fields"),
    [
        ([{"type": "text"}], ["content[0].text"]),
        ([{"type": "text", "text": "ok"}, {"type": "file"}], ["content[1].file_id"]),
        ([{"type": "text", "text": "ok", "colour": "red"}], ["content[0].colour"]),
        ([{"type": "sticker"}], ["content[0]"]),
        (42, ["content"]),
        ("", ["content"]),
        ([], ["content"]),
    ],
)
def test_invalid_content_lists_the_offending_fields(
    client: APIClient, membership: Membership, thread: Thread, content: Any, fields: list[str]
) -> None:
    response = post_message(client, membership, thread, {"content": content})

    assert_invalid(response, *fields)
    assert not Job.objects.exists()


def test_other_bad_message_fields_are_each_named(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = post_message(
        client,
        membership,
        thread,
        {"busy": "sometimes", "context": [1], "expires_in_seconds": 0, "stream_id": 1},
    )

    assert_invalid(response, "content", "busy", "context", "expires_in_seconds")
    assert_invalid(post_message(client, membership, thread, {"content": "Hi", "stream_id": 1}), "stream_id")


def test_the_history_is_oldest_first(client: APIClient, membership: Membership, thread: Thread) -> None:
    first = services.message_create(thread=thread, role="user", content="One", author=membership.user)
    second = services.message_create(thread=thread, role="assistant", content="Two")

    body = client.get(threads_url(membership, thread.pk, "messages")).json()

    assert [item["id"] for item in body["items"]] == [str(first.pk), str(second.pk)]
    assert body["items"][0] == {
        "id": str(first.pk),
        "role": "user",
        "content": [{"type": "text", "text": "One"}],
        "author": membership.user.pk,
        "agent": None,
        "job": None,
        "metadata": {},
        "created_at": body["items"][0]["created_at"],
    }
    assert body["total"] == 2


def test_waiting_gives_up_at_the_timeout_with_202(client: APIClient, membership: Membership, thread: Thread) -> None:
    # No worker runs in this test (its transaction never commits), so the job stays queued.
    response = post_message(client, membership, thread, {"content": "Hello"}, query="?wait=true&timeout=0")

    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_the_wait_timeout_is_capped(client: APIClient, membership: Membership, thread: Thread) -> None:
    response = post_message(client, membership, thread, {"content": "Hello"}, query="?wait=true&timeout=61")

    assert_invalid(response, "timeout")
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_TASK_ALWAYS_EAGER=True)
def test_waiting_answers_200_with_the_result(membership: Membership, client_as: ClientAs) -> None:
    # Eager: the task runs as the submission commits, as a worker would pick it up.
    AgentFactory.create(tenant=membership.tenant, slug="echo-bot")
    thread = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user)

    response = post_message(
        client_as(membership),
        membership,
        thread,
        {"agent": "echo-bot", "content": "Hello there"},
        query="?wait=true&timeout=10",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"]["content"] == [{"type": "text", "text": "Hello there"}]
    assert body["usage"]["total_tokens"] > 0
    assert body["error"] is None
    assert event_types(thread)[-1] == "job.succeeded"


# --- Events ----------------------------------------------------------------------------------------------


def test_the_event_log_pages_oldest_first(client: APIClient, membership: Membership, thread: Thread) -> None:
    services.thread_update(thread=thread, title="One")
    services.thread_update(thread=thread, title="Two")
    services.thread_update(thread=thread, title="Three")
    url = threads_url(membership, thread.pk, "events")

    first = client.get(url, {"limit": 2}).json()
    rest = client.get(url, {"after": first["next_after"], "limit": 2}).json()
    end = client.get(url, {"after": rest["next_after"]}).json()

    assert [(e["id"], e["data"]["title"]) for e in first["items"]] == [(1, "One"), (2, "Two")]
    assert (first["next_after"], first["has_more"]) == (2, True)
    assert [e["id"] for e in rest["items"]] == [3]
    assert (rest["next_after"], rest["has_more"]) == (3, False)
    assert end == {"items": [], "next_after": 3, "has_more": False}


def test_events_have_the_contract_shape(client: APIClient, membership: Membership, thread: Thread) -> None:
    services.thread_update(thread=thread, title="One")

    event = client.get(threads_url(membership, thread.pk, "events")).json()["items"][0]

    assert event.keys() == {"id", "type", "thread", "job", "agent", "created_at", "data"}
    assert (event["type"], event["thread"], event["job"], event["agent"]) == (
        "thread.updated",
        str(thread.pk),
        None,
        None,
    )


@pytest.mark.parametrize(
    ("query", "field"), [({"after": -1}, "after"), ({"after": "x"}, "after"), ({"limit": 0}, "limit")]
)
def test_a_bad_cursor_is_a_clear_problem(
    client: APIClient, membership: Membership, thread: Thread, query: dict[str, Any], field: str
) -> None:
    assert_invalid(client.get(threads_url(membership, thread.pk, "events"), query), field)


# --- State -----------------------------------------------------------------------------------------------


def test_a_new_thread_has_empty_state(client: APIClient, membership: Membership, thread: Thread) -> None:
    assert client.get(threads_url(membership, thread.pk, "state")).json() == {"state": {}}


def test_state_is_merged_by_default_and_replaced_on_request(
    client: APIClient, membership: Membership, thread: Thread
) -> None:
    url = threads_url(membership, thread.pk, "state")

    client.patch(url, {"state": {"step": "start", "order": 1042}}, format="json")
    merged = client.patch(url, {"state": {"step": "confirm"}}, format="json")
    replaced = client.patch(url, {"state": {"done": True}, "mode": "replace"}, format="json")

    assert merged.json() == {"state": {"step": "confirm", "order": 1042}}
    assert replaced.json() == {"state": {"done": True}}
    assert client.get(url).json() == {"state": {"done": True}}
    assert event_types(thread) == ["state.updated"] * 3


def test_bad_state_updates_are_clear_problems(client: APIClient, membership: Membership, thread: Thread) -> None:
    url = threads_url(membership, thread.pk, "state")

    assert_invalid(client.patch(url, {"state": [1], "mode": "append"}, format="json"), "state", "mode")
    assert_invalid(client.patch(url, {"mode": "merge"}, format="json"), "state")
    assert not Event.objects.filter(thread=thread).exists()
