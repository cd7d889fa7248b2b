"""GET /api/v1/{tenant}/audit-log/: the tenant's audit events, newest first, for whoever holds aihub.admin.audit
(the admin role; not member); another tenant's events are never in it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from aihub.access import services
from aihub.access.models import AuditEvent, Membership, Tenant
from tests.factories import MembershipFactory, UserFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem

pytestmark = pytest.mark.django_db


def audit_url(tenant: Tenant | str) -> str:
    return f"/api/v1/{tenant}/audit-log/"


@pytest.fixture
def admin(admin_membership: Membership, client_as: ClientAs) -> APIClient:
    return client_as(admin_membership)


def actions(body: dict[str, object]) -> list[str]:
    return [item["action"] for item in body["items"]]  # type: ignore[attr-defined]


def test_an_admin_reads_who_did_what_to_which_thing_newest_first(
    admin: APIClient, admin_membership: Membership
) -> None:
    tenant = admin_membership.tenant
    created = admin.post(f"/api/v1/{tenant.slug}/roles/", {"name": "auditor", "rules": []}, HTTP_X_REQUEST_ID="req-1")
    assert created.status_code == 201, created.content

    body = admin.get(audit_url(tenant)).json()

    assert body.keys() == {"items", "total", "limit", "offset"}
    # The tenant's creation, its first admin's membership, then the role: newest first.
    assert actions(body) == ["role.created", "membership.created", "tenant.created"]
    assert body["items"][0] == {
        "id": body["items"][0]["id"],
        "created_at": body["items"][0]["created_at"],
        "action": "role.created",
        "actor": admin_membership.user.username,
        "actor_id": admin_membership.user.pk,
        "target_type": "role",
        "target_id": created.json()["id"],
        "ip_address": "127.0.0.1",
        "request_id": "req-1",
        "details": {"rules": []},
    }


def test_a_plain_member_may_not_read_it_and_a_role_with_aihub_admin_audit_may(
    admin_membership: Membership, client_as: ClientAs
) -> None:
    tenant = admin_membership.tenant
    member = MembershipFactory.create(tenant=tenant, roles=["member"])
    assert_problem(client_as(member).get(audit_url(tenant.slug)), 403)

    services.role_create(tenant=tenant, name="auditor", rules=["aihub.admin.audit"])
    auditor = MembershipFactory.create(tenant=tenant, roles=["auditor"])
    body = client_as(auditor).get(audit_url(tenant.slug)).json()

    assert "role.created" in actions(body)


def test_another_tenants_events_are_never_in_the_log(admin: APIClient, admin_membership: Membership) -> None:
    other = MembershipFactory.create(roles=["admin"])
    services.audit_record(action="role.updated", actor=other.user, tenant=other.tenant)
    services.audit_record(action="user.created", actor=other.user)  # in no tenant's log

    body = admin.get(audit_url(admin_membership.tenant.slug), {"limit": 1000}).json()

    assert body["total"] == 2
    assert {event.pk for event in AuditEvent.objects.filter(tenant=admin_membership.tenant)} == {
        item["id"] for item in body["items"]
    }
    # The other tenant's log is in a tenant this admin does not belong to: the 404 of one that does not exist.
    assert assert_problem(admin.get(audit_url(other.tenant.slug)), 404)["detail"] == f"No tenant {other.tenant.slug!r}."


def test_the_log_filters_by_action_actor_and_time(admin: APIClient, admin_membership: Membership) -> None:
    tenant = admin_membership.tenant
    alice, bob = UserFactory.create(username="alice"), UserFactory.create(username="bob")
    old = services.audit_record(action="role.updated", actor=alice, tenant=tenant)
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    recent = services.audit_record(action="role.updated", actor=bob, tenant=tenant)
    url = audit_url(tenant.slug)

    def ids(**query: str) -> list[int]:
        response = admin.get(url, query)
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert ids(action="role.updated") == [recent.pk, old.pk]
    assert ids(actor="alice") == [old.pk]
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert ids(action="role.updated", since=since) == [recent.pk]
    assert ids(action="role.updated", until=since) == [old.pk]
    assert ids(action="role.updated", cursor="", since=since) == [recent.pk]
    assert_invalid(admin.get(url, {"since": "yesterday"}), "since")
    assert_invalid(admin.get(url, {"since": "2026-01-02", "until": "2026-01-01"}), "until")


def test_an_event_of_a_user_deleted_since_still_names_them(admin: APIClient, admin_membership: Membership) -> None:
    gone = UserFactory.create(username="gone")
    services.audit_record(action="role.deleted", actor=gone, tenant=admin_membership.tenant)
    gone.delete()

    (item,) = admin.get(audit_url(admin_membership.tenant.slug), {"action": "role.deleted"}).json()["items"]

    assert (item["actor"], item["actor_id"]) == ("gone", None)


def test_a_cursor_page_of_the_log_costs_one_statement_however_far_the_walk(
    admin: APIClient, admin_membership: Membership
) -> None:
    for _ in range(5):
        services.audit_record(action="role.updated", actor=admin_membership.user, tenant=admin_membership.tenant)
    url = audit_url(admin_membership.tenant.slug)
    first = admin.get(url, {"cursor": "", "limit": "2"}).json()  # also remembers token and roles

    with CaptureQueriesContext(connection) as captured:
        second = admin.get(first["next"])
    assert second.status_code == 200
    statements = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert len(statements) == 1, "\n".join(statements)
