"""Every error under /api/ is an RFC 7807 problem, whatever went wrong and wherever."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from aihub.access.models import Membership, Role, Tenant
from tests.agents.factories import AgentFactory
from tests.api.urls import HALF_WRITTEN_SLUG, SECRET_IN_EXCEPTION
from tests.factories import MembershipFactory
from tests.helpers import assert_problem
from tests.knowledge.factories import CollectionFactory
from tests.threads.factories import FileFactory, ThreadFactory

pytestmark = pytest.mark.django_db


# --- 400 ----------------------------------------------------------------------------------------------------


def test_malformed_json_is_a_400_problem(member_client: APIClient) -> None:
    response = member_client.post("/api/v1/tokens/", data='{"name": "half', content_type="application/json")

    body = assert_problem(response, 400)
    assert body["type"] == "urn:aihub:problem:bad-request"
    assert "JSON" in body["detail"]


def test_validation_errors_list_each_field_with_message_and_code(member_client: APIClient) -> None:
    response = member_client.post(
        "/api/v1/tokens/", {"name": "", "expires_at": "next tuesday", "tenant": "no spaces allowed"}, format="json"
    )

    body = assert_problem(response, 400)
    assert body["type"] == "urn:aihub:problem:validation-error"
    by_field = {error["field"]: error for error in body["errors"]}
    assert by_field.keys() == {"name", "expires_at", "tenant"}
    assert by_field["name"]["code"] == "blank"
    assert by_field["expires_at"]["code"] == "invalid"
    assert all(error["message"] for error in body["errors"])


def test_unknown_fields_are_rejected_where_the_serializer_is_strict(member_client: APIClient) -> None:
    response = member_client.post("/api/v1/tokens/", {"name": "ci", "colour": "red", "scope": "all"}, format="json")

    body = assert_problem(response, 400)
    assert sorted(error["field"] for error in body["errors"]) == ["colour", "scope"]


def test_a_write_that_fails_validation_writes_nothing(member_client: APIClient, membership: Membership) -> None:
    tokens_before = membership.user.api_tokens.count()

    member_client.post("/api/v1/tokens/", {"name": "x" * 500}, format="json")

    assert membership.user.api_tokens.count() == tokens_before


# --- 401, 403 -----------------------------------------------------------------------------------------------


def test_no_credentials_is_a_401_problem_with_a_bearer_challenge(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/me")

    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_token_is_a_401_problem_with_a_bearer_challenge(api_client: APIClient) -> None:
    api_client.credentials(HTTP_AUTHORIZATION="Bearer aih_nope_nope")

    response = api_client.get("/api/v1/me")

    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_member_changing_roles_gets_a_403_problem(member_client: APIClient, membership: Membership) -> None:
    response = member_client.post(
        f"/api/v1/{membership.tenant.slug}/roles/", {"name": "sneaky", "rules": ["aihub.admin.>"]}, format="json"
    )

    body = assert_problem(response, 403)
    assert body["type"] == "urn:aihub:problem:forbidden"


# --- 404 ----------------------------------------------------------------------------------------------------


def test_an_unknown_tenant_is_a_404_problem(member_client: APIClient) -> None:
    assert_problem(member_client.get("/api/v1/no-such-tenant/roles/"), 404)


def test_a_tenant_the_caller_is_not_in_is_the_same_404(member_client: APIClient, admin_membership: Membership) -> None:
    unknown = member_client.get("/api/v1/no-such-tenant/roles/").json()
    foreign = assert_problem(member_client.get(f"/api/v1/{admin_membership.tenant.slug}/roles/"), 404)

    assert foreign["type"] == unknown["type"]
    assert admin_membership.tenant.slug in foreign["detail"]  # it names what was asked for, nothing more


def test_a_malformed_uuid_in_the_path_is_a_404_problem(member_client: APIClient, membership: Membership) -> None:
    assert_problem(member_client.get(f"/api/v1/{membership.tenant.slug}/roles/not-a-uuid/"), 404)


def _foreign_file(other: Membership) -> str:
    return str(FileFactory.create(tenant=other.tenant, uploaded_by=other.user).pk)


def _foreign_thread(other: Membership) -> str:
    return str(ThreadFactory.create(tenant=other.tenant, created_by=other.user).pk)


def _foreign_role(other: Membership) -> str:
    return str(Role.objects.filter(tenant=other.tenant).values_list("pk", flat=True)[0])


def _foreign_collection(other: Membership) -> str:
    return CollectionFactory.create(tenant=other.tenant, slug="handbook").slug


def _foreign_agent(other: Membership) -> str:
    return AgentFactory.create(tenant=other.tenant, slug="helper").slug


@pytest.mark.parametrize(
    ("route", "resource", "make_foreign", "unknown"),
    [
        ("files", "file", _foreign_file, str(uuid.uuid4())),
        ("threads", "thread", _foreign_thread, str(uuid.uuid4())),
        ("roles", "role", _foreign_role, str(uuid.uuid4())),
        ("collections", "collection", _foreign_collection, "no-such-collection"),
        ("agents", "agent", _foreign_agent, "no-such-agent"),
    ],
    ids=["file", "thread", "role", "collection", "agent"],
)
def test_another_tenants_resource_is_the_same_404_as_one_that_does_not_exist(
    admin_membership: Membership,
    client_as: Callable[..., APIClient],
    settings: Any,
    tmp_path: Path,
    route: str,
    resource: str,
    make_foreign: Callable[[Membership], str],
    unknown: str,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    foreign = make_foreign(MembershipFactory.create(roles=["admin"]))
    client = client_as(admin_membership)
    base = f"/api/v1/{admin_membership.tenant.slug}/{route}/"

    foreign_problem = assert_problem(client.get(f"{base}{foreign}/"), 404)
    unknown_problem = assert_problem(client.get(f"{base}{unknown}/"), 404)

    # In the API's own words (not Django's "No File matches the given query."), naming only what was asked for.
    assert foreign_problem["detail"] == f"No {resource} '{foreign}'."
    assert unknown_problem["detail"] == f"No {resource} '{unknown}'."


@pytest.mark.parametrize(
    ("route", "resource"),
    [
        ("jobs/{id}/", "job"),
        ("schedules/{id}/", "schedule"),
        ("memories/{id}/", "memory"),
        ("threads/{id}/messages/", "thread"),
        ("jobs/{id}/artifacts", "job"),
    ],
)
def test_every_kind_of_resource_words_its_404_the_same_way(
    admin_membership: Membership, client_as: Callable[..., APIClient], route: str, resource: str
) -> None:
    missing = uuid.uuid4()
    path = f"/api/v1/{admin_membership.tenant.slug}/" + route.format(id=missing)

    problem = assert_problem(client_as(admin_membership).get(path), 404)

    assert problem["detail"] == f"No {resource} '{missing}'."


def test_a_malformed_id_is_worded_as_any_other_404(
    admin_membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    path = f"/api/v1/{admin_membership.tenant.slug}/roles/not-a-uuid/"

    assert assert_problem(client_as(admin_membership).get(path), 404)["detail"] == "No role 'not-a-uuid'."


def test_an_unknown_route_under_the_api_is_a_404_problem(api_client: APIClient) -> None:
    body = assert_problem(api_client.get("/api/v1/nothing/lives/here"), 404)

    assert body["instance"] == "/api/v1/nothing/lives/here"


@override_settings(DEBUG=True)
def test_an_unknown_route_is_a_problem_and_not_the_debug_page_even_with_debug_on(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/nothing/lives/here")

    assert_problem(response, 404)
    assert b"<html" not in response.content.lower()
    assert b"urlpatterns" not in response.content.lower()


# --- 405, 413, 415, 429 -------------------------------------------------------------------------------------


def test_a_wrong_method_is_a_405_problem_naming_the_allowed_ones(member_client: APIClient) -> None:
    response = member_client.delete("/api/v1/me")

    assert_problem(response, 405)
    assert "GET" in response["Allow"]


def test_a_body_over_the_upload_limit_is_a_413_problem(member_client: APIClient, membership: Membership) -> None:
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        response = member_client.post("/api/v1/tokens/", {"name": "x" * 2000}, format="json")

    body = assert_problem(response, 413)
    assert body["type"] == "urn:aihub:problem:payload-too-large"
    assert not membership.user.api_tokens.filter(name__startswith="xxxx").exists()


def test_a_body_under_the_upload_limit_is_accepted(member_client: APIClient) -> None:
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        response = member_client.post("/api/v1/tokens/", {"name": "small"}, format="json")

    assert response.status_code == 201


def test_an_unsupported_content_type_is_a_415_problem(member_client: APIClient) -> None:
    response = member_client.post("/api/v1/tokens/", data="<name>ci</name>", content_type="application/xml")

    body = assert_problem(response, 415)
    assert "application/xml" in body["detail"]


def test_too_many_requests_is_a_429_problem_with_retry_after(member_client: APIClient) -> None:
    with override_settings(AIHUB={"THROTTLE_RATES": {"token": "1/minute", "ip": "100/minute"}}):
        member_client.get("/api/v1/me")
        response = member_client.get("/api/v1/me")

    assert_problem(response, 429)
    assert 1 <= int(response["Retry-After"]) <= 2 * 60


# --- 500 ----------------------------------------------------------------------------------------------------


def _assert_reveals_nothing(content: bytes) -> None:
    text = content.decode()
    assert SECRET_IN_EXCEPTION not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text
    assert "<html" not in text.lower()


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("path", ["/api/v1/_test/boom", "/api/v1/_test/plain-boom"], ids=["drf-view", "django-view"])
def test_an_unhandled_exception_is_a_500_problem_that_reveals_nothing(
    test_urls: None, api_client: APIClient, debug: bool, path: str
) -> None:
    with override_settings(DEBUG=debug):
        response = api_client.get(path)

    body = assert_problem(response, 500)
    assert body["type"] == "urn:aihub:problem:server-error"
    _assert_reveals_nothing(response.content)


def test_an_unhandled_exception_is_logged_with_its_traceback_for_operators(
    test_urls: None, api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    api_client.get("/api/v1/_test/boom")

    assert any(SECRET_IN_EXCEPTION in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


@pytest.mark.parametrize(("fail", "status"), [("crash", 500), ("validation", 400)])
def test_a_view_that_fails_after_writing_leaves_nothing_half_written(
    test_urls: None, api_client: APIClient, fail: str, status: int
) -> None:
    # The view's transaction wraps the whole request; turning the exception into a response must not
    # let that transaction commit as if the view had succeeded.
    response = api_client.post(f"/api/v1/_test/half-write?fail={fail}")

    assert_problem(response, status)
    assert not Tenant.objects.filter(slug=HALF_WRITTEN_SLUG).exists()


def test_a_client_that_accepts_only_html_gets_a_406_problem_in_json(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/me", HTTP_ACCEPT="text/html")

    assert_problem(response, 406)
    assert json.loads(response.content)["type"] == "urn:aihub:problem:not-acceptable"


def test_errors_outside_the_api_are_left_to_django(api_client: APIClient) -> None:
    response = api_client.get("/not-the-api/")

    assert response.status_code == 404
    assert response["Content-Type"] != "application/problem+json"


@pytest.fixture
def restricted_client(
    membership: Membership, admin_membership: Membership, client_as: Callable[..., APIClient]
) -> APIClient:
    """A member of two tenants holding a token restricted to the first."""
    MembershipFactory.create(user=membership.user, tenant=admin_membership.tenant, roles=["member"])
    return client_as(membership, tenant=membership.tenant)


def test_a_token_used_against_a_tenant_it_is_restricted_from_is_a_403_problem(
    restricted_client: APIClient, admin_membership: Membership
) -> None:
    assert_problem(restricted_client.get(f"/api/v1/{admin_membership.tenant.slug}/roles/"), 403)
