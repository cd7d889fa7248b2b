"""/api/v1/{tenant}/members/: reading needs aihub.user.members, changing aihub.admin.members, within your rules."""

from __future__ import annotations

from typing import Any

import pytest

from aihub.access import services
from aihub.access.models import AuditEvent, Membership, Tenant
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem

pytestmark = pytest.mark.django_db


def members_url(tenant: Tenant, membership: Membership | None = None) -> str:
    return f"/api/v1/{tenant.slug}/members/" + (f"{membership.id}/" if membership is not None else "")


def snapshot(tenant: Tenant) -> list[tuple[Any, ...]]:
    return [
        (m.id, m.user_id, m.is_default, sorted(r.name for r in m.roles.all()))
        for m in Membership.objects.filter(tenant=tenant).prefetch_related("roles").order_by("id")
    ]


def roles_of(membership: Membership) -> list[str]:
    return sorted(membership.roles.values_list("name", flat=True))


# --- Reading ---------------------------------------------------------------------------------------------


def test_a_member_lists_who_belongs_with_which_roles(client_as: ClientAs, membership: Membership) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["viewer", "agent-user"])
    MembershipFactory.create()  # in another tenant

    response = client_as(membership).get(members_url(membership.tenant))

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    assert [(m["user"]["username"], m["roles"]) for m in body["items"]] == [
        (membership.user.username, ["member"]),
        (colleague.user.username, ["agent-user", "viewer"]),
    ]


def test_a_member_reads_one_membership(client_as: ClientAs, membership: Membership) -> None:
    response = client_as(membership).get(members_url(membership.tenant, membership))

    assert response.status_code == 200
    assert response.json()["id"] == str(membership.id)
    assert response.json()["user"] == {
        "id": membership.user.id,
        "username": membership.user.username,
        "email": membership.user.email,
    }


def test_a_role_without_any_members_rule_cannot_even_see_members(client_as: ClientAs) -> None:
    agent_user = MembershipFactory.create(roles=["agent-user"])
    client, tenant = client_as(agent_user), agent_user.tenant
    before = snapshot(tenant)

    assert_problem(client.get(members_url(tenant)), 404)
    assert_problem(client.get(members_url(tenant, agent_user)), 404)
    assert_problem(client.post(members_url(tenant), {"username": UserFactory.create().username, "roles": []}), 404)
    assert_problem(client.patch(members_url(tenant, agent_user), {"roles": ["admin"]}), 404)
    assert_problem(client.delete(members_url(tenant, agent_user)), 404)
    assert snapshot(tenant) == before


# --- Writing needs the admin rule ------------------------------------------------------------------------


def test_a_member_can_see_but_not_change_members(client_as: ClientAs, membership: Membership) -> None:
    client, tenant = client_as(membership), membership.tenant
    before = snapshot(tenant)

    assert_problem(client.post(members_url(tenant), {"username": UserFactory.create().username, "roles": []}), 403)
    assert_problem(client.patch(members_url(tenant, membership), {"roles": ["admin"]}), 403)
    assert_problem(client.patch(members_url(tenant, membership), {"roles": "garbage"}), 403)
    assert_problem(client.delete(members_url(tenant, membership)), 403)
    assert snapshot(tenant) == before


def test_an_admin_adds_a_user_with_roles(client_as: ClientAs, admin_membership: Membership) -> None:
    newcomer = UserFactory.create()

    response = client_as(admin_membership).post(
        members_url(admin_membership.tenant), {"username": newcomer.username, "roles": ["viewer", "agent-user"]}
    )

    assert response.status_code == 201, response.content
    assert response.json()["user"]["username"] == newcomer.username
    assert response.json()["roles"] == ["agent-user", "viewer"]
    membership = Membership.objects.get(tenant=admin_membership.tenant, user=newcomer)
    assert roles_of(membership) == ["agent-user", "viewer"]
    assert membership.is_default is True
    assert AuditEvent.objects.filter(action="membership.created", target_id=str(membership.id)).exists()


def test_an_admin_changes_roles_and_the_response_shows_the_new_ones(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    colleague = MembershipFactory.create(tenant=admin_membership.tenant, roles=["member"])

    response = client_as(admin_membership).patch(
        members_url(admin_membership.tenant, colleague), {"roles": ["viewer", "knowledge-admin"]}
    )

    assert response.status_code == 200, response.content
    assert response.json()["roles"] == ["knowledge-admin", "viewer"]
    assert roles_of(colleague) == ["knowledge-admin", "viewer"]
    event = AuditEvent.objects.get(action="membership.roles_changed", target_id=str(colleague.id))
    assert event.details["roles_before"] == ["member"]


def test_an_admin_may_leave_a_member_with_no_roles(client_as: ClientAs, admin_membership: Membership) -> None:
    colleague = MembershipFactory.create(tenant=admin_membership.tenant, roles=["member"])

    response = client_as(admin_membership).patch(members_url(admin_membership.tenant, colleague), {"roles": []})

    assert response.status_code == 200
    assert response.json()["roles"] == []


def test_an_admin_removes_a_member(client_as: ClientAs, admin_membership: Membership) -> None:
    colleague = MembershipFactory.create(tenant=admin_membership.tenant, roles=["member"])

    response = client_as(admin_membership).delete(members_url(admin_membership.tenant, colleague))

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=colleague.pk).exists()
    assert AuditEvent.objects.filter(action="membership.deleted", target_id=str(colleague.id)).exists()


# --- Bad input -------------------------------------------------------------------------------------------


def test_adding_an_unknown_user_is_a_validation_problem(client_as: ClientAs, admin_membership: Membership) -> None:
    before = snapshot(admin_membership.tenant)

    response = client_as(admin_membership).post(
        members_url(admin_membership.tenant), {"username": "nobody-by-this-name", "roles": ["member"]}
    )

    assert_invalid(response, "username")
    assert snapshot(admin_membership.tenant) == before


def test_adding_a_disabled_user_is_a_validation_problem(client_as: ClientAs, admin_membership: Membership) -> None:
    disabled = UserFactory.create(is_active=False)

    response = client_as(admin_membership).post(
        members_url(admin_membership.tenant), {"username": disabled.username, "roles": []}
    )

    assert_invalid(response, "username")


def test_adding_an_existing_member_again_is_a_validation_problem(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    colleague = MembershipFactory.create(tenant=admin_membership.tenant, roles=["viewer"])
    before = snapshot(admin_membership.tenant)

    response = client_as(admin_membership).post(
        members_url(admin_membership.tenant), {"username": colleague.user.username, "roles": ["member"]}
    )

    assert_invalid(response, "user")
    assert snapshot(admin_membership.tenant) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "someone", "roles": ["no-such-role"]}, "roles"),
        ({"username": "someone", "roles": "member"}, "roles"),
        ({"username": "someone"}, "roles"),
        ({"roles": ["member"]}, "username"),
        ({"username": "someone", "roles": ["member"], "is_default": True}, "is_default"),
    ],
)
def test_an_invalid_membership_is_a_validation_problem_naming_the_field(
    client_as: ClientAs, admin_membership: Membership, body: dict[str, Any], field: str
) -> None:
    UserFactory.create(username="someone")
    before = snapshot(admin_membership.tenant)

    assert_invalid(client_as(admin_membership).post(members_url(admin_membership.tenant), body), field)
    assert snapshot(admin_membership.tenant) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"roles": ["no-such-role"]}, "roles"),
        ({}, "roles"),
        ({"roles": ["member"], "user": "someone-else"}, "user"),
    ],
)
def test_an_invalid_change_is_a_validation_problem_naming_the_field(
    client_as: ClientAs, admin_membership: Membership, body: dict[str, Any], field: str
) -> None:
    colleague = MembershipFactory.create(tenant=admin_membership.tenant, roles=["viewer"])
    before = snapshot(admin_membership.tenant)

    assert_invalid(client_as(admin_membership).patch(members_url(admin_membership.tenant, colleague), body), field)
    assert snapshot(admin_membership.tenant) == before


def test_a_role_of_another_tenant_cannot_be_assigned(client_as: ClientAs, admin_membership: Membership) -> None:
    services.role_create(tenant=TenantFactory.create(), name="elsewhere-only", rules=["aihub.user.>"])
    colleague = MembershipFactory.create(tenant=admin_membership.tenant, roles=["viewer"])

    response = client_as(admin_membership).patch(
        members_url(admin_membership.tenant, colleague), {"roles": ["elsewhere-only"]}
    )

    assert_invalid(response, "roles")
    assert roles_of(colleague) == ["viewer"]


# --- No privilege escalation -----------------------------------------------------------------------------


def test_nobody_adds_a_member_with_a_role_stronger_than_their_own(
    client_as: ClientAs, role_manager: Membership
) -> None:
    newcomer = UserFactory.create()

    response = client_as(role_manager).post(
        members_url(role_manager.tenant), {"username": newcomer.username, "roles": ["admin"]}
    )

    assert_problem(response, 403)
    assert not Membership.objects.filter(user=newcomer).exists()


def test_nobody_promotes_anyone_to_a_role_stronger_than_their_own(
    client_as: ClientAs, role_manager: Membership
) -> None:
    client, tenant = client_as(role_manager), role_manager.tenant
    colleague = MembershipFactory.create(tenant=tenant, roles=["viewer"])

    assert_problem(client.patch(members_url(tenant, role_manager), {"roles": ["role-manager", "admin"]}), 403)
    assert_problem(client.patch(members_url(tenant, colleague), {"roles": ["admin"]}), 403)
    assert roles_of(role_manager) == ["role-manager"]
    assert roles_of(colleague) == ["viewer"]


def test_nobody_demotes_or_removes_someone_stronger_than_themselves(
    client_as: ClientAs, role_manager: Membership
) -> None:
    client, tenant = client_as(role_manager), role_manager.tenant
    boss = MembershipFactory.create(tenant=tenant, roles=["admin"])
    before = snapshot(tenant)

    assert_problem(client.patch(members_url(tenant, boss), {"roles": ["viewer"]}), 403)
    assert_problem(client.delete(members_url(tenant, boss)), 403)
    assert snapshot(tenant) == before


def test_roles_within_ones_own_rules_may_be_given(client_as: ClientAs, role_manager: Membership) -> None:
    newcomer = UserFactory.create()

    response = client_as(role_manager).post(
        members_url(role_manager.tenant), {"username": newcomer.username, "roles": ["member", "viewer"]}
    )

    assert response.status_code == 201, response.content
