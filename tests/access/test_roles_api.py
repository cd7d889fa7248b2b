"""/api/v1/{tenant}/roles/: reading needs aihub.user.roles, changing aihub.admin.roles, granting what you hold."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from aihub.access import services
from aihub.access.models import AuditEvent, Membership, Role, Tenant
from tests.factories import MembershipFactory, TenantFactory
from tests.helpers import DEFAULT_ROLE_NAMES, ClientAs, assert_invalid, assert_problem

pytestmark = pytest.mark.django_db


def roles_url(tenant: Tenant, role: Role | None = None) -> str:
    return f"/api/v1/{tenant.slug}/roles/" + (f"{role.id}/" if role is not None else "")


def role_named(tenant: Tenant, name: str) -> Role:
    return Role.objects.get(tenant=tenant, name=name)


def snapshot(tenant: Tenant) -> list[tuple[Any, ...]]:
    return list(Role.objects.filter(tenant=tenant).order_by("name").values_list("id", "name", "description", "rules"))


# --- Reading ---------------------------------------------------------------------------------------------


def test_a_member_lists_the_roles_with_their_rules(client_as: ClientAs, membership: Membership) -> None:
    response = client_as(membership).get(roles_url(membership.tenant))

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 5
    assert [r["name"] for r in body["items"]] == DEFAULT_ROLE_NAMES
    assert body["items"][3]["rules"] == ["aihub.user.>"]


def test_active_stands_for_the_default_tenant(client_as: ClientAs, membership: Membership) -> None:
    member_role = role_named(membership.tenant, "member")

    response = client_as(membership).get(f"/api/v1/active/roles/{member_role.id}/")

    assert response.status_code == 200
    assert response.json()["id"] == str(member_role.id)


def test_a_member_reads_one_role(client_as: ClientAs, membership: Membership) -> None:
    role = role_named(membership.tenant, "knowledge-admin")

    response = client_as(membership).get(roles_url(membership.tenant, role))

    assert response.status_code == 200
    assert response.json() == {
        "id": str(role.id),
        "name": "knowledge-admin",
        "description": role.description,
        "rules": ["aihub.user.>", "aihub.admin.collections.>"],
        "created_at": response.json()["created_at"],
    }


def test_an_unknown_or_malformed_role_id_is_not_found(client_as: ClientAs, membership: Membership) -> None:
    client = client_as(membership)

    assert_problem(client.get(roles_url(membership.tenant) + "8a0c44a4-59e4-4d3b-9a43-8f4f3c0d6b11/"), 404)
    assert_problem(client.get(roles_url(membership.tenant) + "not-a-uuid/"), 404)


def test_a_role_without_any_roles_rule_cannot_even_see_roles(client_as: ClientAs) -> None:
    agent_user = MembershipFactory.create(roles=["agent-user"])
    client, tenant = client_as(agent_user), agent_user.tenant
    admin_role = role_named(tenant, "admin")
    before = snapshot(tenant)

    assert_problem(client.get(roles_url(tenant)), 404)
    assert_problem(client.get(roles_url(tenant, admin_role)), 404)
    assert_problem(client.post(roles_url(tenant), {"name": "x", "rules": []}), 404)
    assert_problem(client.patch(roles_url(tenant, admin_role), {"description": "x"}), 404)
    assert_problem(client.delete(roles_url(tenant, admin_role)), 404)
    assert snapshot(tenant) == before


# --- Writing needs the admin rule ------------------------------------------------------------------------


def test_a_member_can_see_but_not_change_roles(client_as: ClientAs, membership: Membership) -> None:
    client, tenant = client_as(membership), membership.tenant
    viewer = role_named(tenant, "viewer")
    before = snapshot(tenant)

    assert_problem(client.post(roles_url(tenant), {"name": "x", "rules": ["aihub.user.agents"]}), 403)
    assert_problem(client.patch(roles_url(tenant, viewer), {"rules": ["aihub.user.>"]}), 403)
    assert_problem(client.delete(roles_url(tenant, viewer)), 403)
    assert snapshot(tenant) == before


def test_a_forbidden_write_says_so_before_judging_the_body_or_the_id(
    client_as: ClientAs, membership: Membership
) -> None:
    client, tenant = client_as(membership), membership.tenant
    viewer = role_named(tenant, "viewer")

    assert_problem(client.patch(roles_url(tenant, viewer), {"rules": "not a list", "bogus": 1}), 403)
    assert_problem(client.patch(roles_url(tenant) + "8a0c44a4-59e4-4d3b-9a43-8f4f3c0d6b11/", {}), 403)


def test_an_admin_creates_a_role(client_as: ClientAs, admin_membership: Membership) -> None:
    tenant = admin_membership.tenant

    response = client_as(admin_membership).post(
        roles_url(tenant),
        {"name": "bot-users", "description": "Talk to the bot", "rules": ["aihub.user.agents.bot"] * 2},
    )

    assert response.status_code == 201, response.content
    assert response.json()["name"] == "bot-users"
    assert response.json()["rules"] == ["aihub.user.agents.bot"]
    role = role_named(tenant, "bot-users")
    assert role.rules == ["aihub.user.agents.bot"]
    assert AuditEvent.objects.filter(
        action="role.created", target_id=str(role.id), actor=admin_membership.user
    ).exists()


def test_an_admin_changes_a_role_and_the_response_shows_the_new_state(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    viewer = role_named(admin_membership.tenant, "viewer")

    response = client_as(admin_membership).patch(
        roles_url(admin_membership.tenant, viewer), {"rules": ["aihub.user.agents.>"], "description": "Agents only"}
    )

    assert response.status_code == 200, response.content
    assert response.json()["rules"] == ["aihub.user.agents.>"]
    assert response.json()["description"] == "Agents only"
    viewer.refresh_from_db()
    assert viewer.rules == ["aihub.user.agents.>"]
    event = AuditEvent.objects.get(action="role.updated", target_id=str(viewer.id))
    assert event.details["rules"] == ["aihub.user.agents.>"]


def test_an_admin_deletes_a_role(client_as: ClientAs, admin_membership: Membership) -> None:
    viewer = role_named(admin_membership.tenant, "viewer")

    response = client_as(admin_membership).delete(roles_url(admin_membership.tenant, viewer))

    assert response.status_code == 204
    assert not Role.objects.filter(pk=viewer.pk).exists()
    assert AuditEvent.objects.filter(action="role.deleted", target_id=str(viewer.id)).exists()


def test_put_is_not_offered(client_as: ClientAs, admin_membership: Membership) -> None:
    viewer = role_named(admin_membership.tenant, "viewer")

    assert_problem(client_as(admin_membership).put(roles_url(admin_membership.tenant, viewer), {"rules": []}), 405)


def test_the_tenant_ceiling_stops_even_an_admin(client_as: ClientAs) -> None:
    admin = MembershipFactory.create(tenant=TenantFactory.create(rule_ceiling=["aihub.user.>"]), roles=["admin"])

    assert client_as(admin).get(roles_url(admin.tenant)).status_code == 200
    assert_problem(client_as(admin).post(roles_url(admin.tenant), {"name": "x", "rules": []}), 403)


# --- Bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "rules": ["aihub.superuser.>"]}, "rules"),
        ({"name": "x", "rules": ["other.user.>"]}, "rules"),
        ({"name": "x", "rules": ["aihub.user.>.agents"]}, "rules"),
        ({"name": "x", "rules": "aihub.user.>"}, "rules"),
        ({"name": "x", "rules": [""]}, "rules.0"),
        ({"name": "x"}, "rules"),
        ({"name": "not a slug", "rules": []}, "name"),
        ({"name": "x", "rules": [], "tenant": "elsewhere"}, "tenant"),
        ({"name": "member", "rules": []}, "name"),
    ],
)
def test_an_invalid_role_is_a_validation_problem_naming_the_field(
    client_as: ClientAs, admin_membership: Membership, body: dict[str, Any], field: str
) -> None:
    before = snapshot(admin_membership.tenant)

    assert_invalid(client_as(admin_membership).post(roles_url(admin_membership.tenant), body), field)
    assert snapshot(admin_membership.tenant) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rules": ["aihub.nope"]}, "rules"),
        ({"name": "renamed"}, "name"),
        ({"description": "x" * 301}, "description"),
    ],
)
def test_an_invalid_change_is_a_validation_problem_naming_the_field(
    client_as: ClientAs, admin_membership: Membership, body: dict[str, Any], field: str
) -> None:
    viewer = role_named(admin_membership.tenant, "viewer")
    before = snapshot(admin_membership.tenant)

    assert_invalid(client_as(admin_membership).patch(roles_url(admin_membership.tenant, viewer), body), field)
    assert snapshot(admin_membership.tenant) == before


def test_the_same_role_name_may_be_used_in_another_tenant(client_as: ClientAs, admin_membership: Membership) -> None:
    services.role_create(tenant=TenantFactory.create(), name="bot-users", rules=[])

    response = client_as(admin_membership).post(roles_url(admin_membership.tenant), {"name": "bot-users", "rules": []})

    assert response.status_code == 201


def test_the_role_service_refuses_a_duplicate_name_with_the_field_named(admin_membership: Membership) -> None:
    with pytest.raises(ValidationError) as refused:
        services.role_create(tenant=admin_membership.tenant, name="viewer", rules=[])

    assert list(refused.value.message_dict) == ["name"]


# --- No privilege escalation -----------------------------------------------------------------------------


def test_nobody_creates_a_role_with_rules_beyond_their_own(client_as: ClientAs, role_manager: Membership) -> None:
    before = snapshot(role_manager.tenant)

    response = client_as(role_manager).post(roles_url(role_manager.tenant), {"name": "x", "rules": ["aihub.admin.>"]})

    assert_problem(response, 403)
    assert snapshot(role_manager.tenant) == before


def test_a_knowledge_admin_cannot_create_roles_at_all(client_as: ClientAs) -> None:
    knowledge_admin = MembershipFactory.create(roles=["knowledge-admin"])

    response = client_as(knowledge_admin).post(
        roles_url(knowledge_admin.tenant), {"name": "x", "rules": ["aihub.admin.>"]}
    )

    assert_problem(response, 403)
    assert not Role.objects.filter(tenant=knowledge_admin.tenant, name="x").exists()


def test_rules_within_ones_own_may_be_granted(client_as: ClientAs, role_manager: Membership) -> None:
    response = client_as(role_manager).post(
        roles_url(role_manager.tenant), {"name": "readers", "rules": ["aihub.user.agents.>", "aihub.user.roles"]}
    )

    assert response.status_code == 201, response.content


def test_nobody_widens_a_role_beyond_their_own_rules(client_as: ClientAs, role_manager: Membership) -> None:
    viewer = role_named(role_manager.tenant, "viewer")
    before = snapshot(role_manager.tenant)

    response = client_as(role_manager).patch(roles_url(role_manager.tenant, viewer), {"rules": ["aihub.admin.>"]})

    assert_problem(response, 403)
    assert snapshot(role_manager.tenant) == before


def test_nobody_rewrites_or_deletes_a_role_stronger_than_their_own(
    client_as: ClientAs, role_manager: Membership
) -> None:
    client, tenant = client_as(role_manager), role_manager.tenant
    admin_role = role_named(tenant, "admin")
    before = snapshot(tenant)

    assert_problem(client.patch(roles_url(tenant, admin_role), {"rules": ["aihub.user.>"]}), 403)
    assert_problem(client.delete(roles_url(tenant, admin_role)), 403)
    assert snapshot(tenant) == before


def test_a_name_clash_that_slips_past_the_checks_is_still_a_validation_problem(admin_membership: Membership) -> None:
    """As when a concurrent request commits the same name between our check and our INSERT."""
    tenant = admin_membership.tenant
    twin = Role(tenant=tenant, name="viewer", rules=[])

    with transaction.atomic():
        with pytest.raises(ValidationError) as refused:
            services._save_unique(
                twin,
                still_clashes=lambda: Role.objects.filter(tenant=tenant, name="viewer").exists(),
                error={"name": "taken"},
            )
        # The savepoint kept the transaction usable (PostgreSQL aborts it after a failed statement otherwise).
        assert Role.objects.filter(tenant=tenant).count() == 5

    assert refused.value.message_dict == {"name": ["taken"]}
