"""Every JSON body is read within the same bounds: too deep is a 400 problem, a NUL in a string a 400 naming
where it is, on every route (sync, async, with its own parsers, the OpenAI-compatible API)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from aihub.access.models import Membership
from jobs.models import Job
from tests.agents.factories import AgentFactory
from tests.helpers import assert_invalid, assert_problem
from tests.knowledge.factories import CollectionFactory
from threads import services
from threads.models import Thread

pytestmark = pytest.mark.django_db

TEN_THOUSAND_LISTS = "[" * 10_000 + "]" * 10_000
TEN_THOUSAND_OBJECTS = '{"a":' * 10_000 + "1" + "}" * 10_000


def nested(depth: int) -> Any:
    """A JSON object nested ``depth`` levels deep (the outermost counts as one)."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def post_raw(client: APIClient, path: str, body: str) -> Any:
    return client.post(path, data=body, content_type="application/json")


@pytest.fixture
def thread(membership: Membership) -> Thread:
    agent = AgentFactory.create(tenant=membership.tenant, slug="echo-bot")
    return services.thread_create(tenant=membership.tenant, created_by=membership.user, agent_ids=[agent.pk])


# --- Too deep ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [TEN_THOUSAND_LISTS, TEN_THOUSAND_OBJECTS], ids=["lists", "objects"])
def test_ten_thousand_levels_of_nesting_are_a_400_problem_not_a_500(
    member_client: APIClient, membership: Membership, body: str
) -> None:
    response = post_raw(member_client, f"/api/v1/{membership.tenant.slug}/threads/", body)

    problem = assert_problem(response, 400)
    assert problem["type"] == "urn:aihub:problem:bad-request"
    assert "nested deeper than 64 levels" in problem["detail"]


def test_a_body_deeper_than_the_limit_but_not_the_stack_is_refused_as_well(
    member_client: APIClient, membership: Membership
) -> None:
    # 500 levels parse without a RecursionError, but would overflow whatever walked them next.
    response = member_client.post(
        f"/api/v1/{membership.tenant.slug}/threads/", {"metadata": nested(500)}, format="json"
    )

    assert_problem(response, 400)
    assert not Thread.objects.exists()


def test_a_body_as_deep_as_the_limit_is_accepted(member_client: APIClient, membership: Membership) -> None:
    # The body is one level, its metadata the other 63.
    response = member_client.post(f"/api/v1/{membership.tenant.slug}/threads/", {"metadata": nested(63)}, format="json")

    assert response.status_code == 201, response.content


def test_the_limit_is_a_setting(member_client: APIClient, membership: Membership, settings: Any) -> None:
    settings.AIHUB = {**settings.AIHUB, "JSON_MAX_DEPTH": 3}

    response = member_client.post(f"/api/v1/{membership.tenant.slug}/threads/", {"metadata": nested(3)}, format="json")

    assert "nested deeper than 3 levels" in assert_problem(response, 400)["detail"]


def test_an_async_route_refuses_a_too_deep_body_the_same_way(
    member_client: APIClient, membership: Membership, thread: Thread
) -> None:
    response = post_raw(
        member_client, f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/messages/", TEN_THOUSAND_LISTS
    )

    assert "nested deeper" in assert_problem(response, 400)["detail"]
    assert not Job.objects.exists()


def test_a_route_with_its_own_parsers_refuses_a_too_deep_body_the_same_way(
    admin_membership: Membership, client_as: Any
) -> None:
    collection = CollectionFactory.create(tenant=admin_membership.tenant, slug="handbook")
    path = f"/api/v1/{admin_membership.tenant.slug}/collections/{collection.slug}/documents/"

    response = post_raw(client_as(admin_membership), path, TEN_THOUSAND_OBJECTS)

    assert "nested deeper" in assert_problem(response, 400)["detail"]


def test_the_openai_compatible_api_answers_a_too_deep_body_as_openai_does(member_client: APIClient) -> None:
    response = post_raw(member_client, "/openai/v1/chat/completions", TEN_THOUSAND_LISTS)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- NUL characters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("Hello\u0000", "content"),
        ([{"type": "text", "text": "ok"}, {"type": "text", "text": "\u0000"}], "content[1].text"),
    ],
)
def test_a_nul_in_message_content_is_refused_naming_the_field(
    member_client: APIClient, membership: Membership, thread: Thread, content: Any, field: str
) -> None:
    response = member_client.post(
        f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/messages/", {"content": content}, format="json"
    )

    body = assert_invalid(response, field)
    assert body["errors"][0]["code"] == "null_characters_not_allowed"
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "Refund\u0000"}, "title"),
        ({"metadata": {"channel": "web\u0000"}}, "metadata.channel"),
        ({"metadata": {"tags": ["ok", "\u0000"]}}, "metadata.tags[1]"),
        ({"metadata": {"bad\u0000key": 1}}, "metadata.bad\\u0000key"),
    ],
)
def test_a_nul_anywhere_in_a_json_body_is_refused_naming_where(
    member_client: APIClient, membership: Membership, body: dict[str, Any], field: str
) -> None:
    response = member_client.post(f"/api/v1/{membership.tenant.slug}/threads/", body, format="json")

    assert_invalid(response, field)
    assert not Thread.objects.exists()


def test_a_nul_in_json_metadata_of_a_multipart_upload_is_refused(admin_membership: Membership, client_as: Any) -> None:
    collection = CollectionFactory.create(tenant=admin_membership.tenant, slug="handbook")
    path = f"/api/v1/{admin_membership.tenant.slug}/collections/{collection.slug}/documents/"

    response = client_as(admin_membership).post(
        path, {"text": "Returns take 30 days.", "metadata": '{"team": "\\u0000"}'}, format="multipart"
    )

    assert_invalid(response, "metadata")


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("threads/", {"agent": "echo\u0000"}, "agent"),
        ("jobs/", {"agent": "\u0000"}, "agent"),
        ("jobs/", {"cursor": "\u0000"}, "cursor"),
        ("memories/", {"q": "refunds\u0000"}, "q"),
        ("roles/", {"bad\u0000name": "1"}, "bad\\u0000name"),
    ],
)
def test_a_nul_in_a_query_parameter_is_refused_naming_it(
    member_client: APIClient, membership: Membership, path: str, query: dict[str, str], field: str
) -> None:
    # On PostgreSQL a NUL reaching a filter fails the query: the same request must be a 400 on every database.
    response = member_client.get(f"/api/v1/{membership.tenant.slug}/{path}", query)

    body = assert_invalid(response, field)
    assert body["errors"][0]["code"] == "null_characters_not_allowed"
