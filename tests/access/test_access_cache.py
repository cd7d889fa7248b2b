"""The per-process access cache (aihub.access.cache): repeated requests skip the token and role queries, and
every change of access is seen by the very next request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aihub.access import services
from aihub.access.models import ApiToken, Membership, Role
from tests.factories import ApiTokenFactory
from tests.helpers import assert_problem, bearer

pytestmark = pytest.mark.django_db

ACCESS_TABLES = ('"access_apitoken"', '"access_membership"', '"access_role"', '"access_tenant"', '"auth_user"')


def access_reads(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and any(t in q["sql"] for t in ACCESS_TABLES)
    ]


def roles_url(membership: Membership) -> str:
    return f"/api/v1/{membership.tenant.slug}/roles/"


def test_a_second_request_with_the_same_token_reads_no_access_tables(membership: Membership) -> None:
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)

    with CaptureQueriesContext(connection) as first:
        assert client.get(roles_url(membership)).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert client.get(roles_url(membership)).status_code == 200

    assert len(access_reads(first)) >= 3  # the token, the membership with its tenant, the roles
    # What is left reads the roles listed in the response itself, not the caller's.
    assert [sql for sql in access_reads(second) if '"access_apitoken"' in sql or '"access_membership"' in sql] == []
    assert len(second.captured_queries) < len(first.captured_queries)


def test_a_token_revoked_after_use_is_refused_on_the_next_request(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    client = bearer(token.raw)
    assert client.get(roles_url(membership)).status_code == 200

    services.api_token_revoke(token=ApiToken.objects.get(pk=token.pk), actor=membership.user)

    assert_problem(client.get(roles_url(membership)), 401)


def test_a_user_deactivated_after_use_is_refused_on_the_next_request(membership: Membership) -> None:
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)
    assert client.get(roles_url(membership)).status_code == 200

    membership.user.is_active = False
    membership.user.save(update_fields=["is_active"])

    assert_problem(client.get(roles_url(membership)), 401)


def test_changed_roles_apply_to_the_next_request(membership: Membership) -> None:
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)
    threads = f"/api/v1/{membership.tenant.slug}/threads/"
    assert client.post(threads, {"title": "allowed"}, format="json").status_code == 201
    member = Role.objects.get(tenant=membership.tenant, name="member")

    services.role_update(role=member, rules=["aihub.user.agents.>"])

    assert_problem(client.post(threads, {"title": "no longer"}, format="json"), 404)


def test_a_removed_member_no_longer_reaches_the_tenant(membership: Membership) -> None:
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)
    assert client.get(roles_url(membership)).status_code == 200

    Membership.objects.filter(pk=membership.pk).get().delete()

    assert_problem(client.get(roles_url(membership)), 404)
