"""Through the API, a tenant can never be left without a member who can manage members and roles."""

from __future__ import annotations

import pytest

from aihub.access import services
from aihub.access.models import AuditEvent, Membership, Role
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid

pytestmark = pytest.mark.django_db


def test_the_last_admin_cannot_leave_the_tenant(client_as: ClientAs, admin_membership: Membership) -> None:
    url = f"/api/v1/{admin_membership.tenant.slug}/members/{admin_membership.id}/"

    response = client_as(admin_membership).delete(url)

    assert_invalid(response, "roles")
    assert Membership.objects.filter(pk=admin_membership.pk).exists()


def test_the_last_admin_cannot_drop_their_own_admin_role(client_as: ClientAs, admin_membership: Membership) -> None:
    url = f"/api/v1/{admin_membership.tenant.slug}/members/{admin_membership.id}/"

    response = client_as(admin_membership).patch(url, {"roles": ["member"]}, format="json")

    assert_invalid(response, "roles")
    assert list(admin_membership.roles.values_list("name", flat=True)) == ["admin"]


def test_the_admin_role_cannot_be_emptied_while_it_is_the_only_way_to_manage(
    client_as: ClientAs, admin_membership: Membership
) -> None:
    admin_role = Role.objects.get(tenant=admin_membership.tenant, name="admin")

    response = client_as(admin_membership).patch(
        f"/api/v1/{admin_membership.tenant.slug}/roles/{admin_role.id}/", {"rules": ["aihub.user.>"]}, format="json"
    )

    assert_invalid(response, "roles")
    admin_role.refresh_from_db()
    assert admin_role.rules == ["aihub.admin.>"]


def test_an_admin_may_leave_when_another_admin_remains(client_as: ClientAs, admin_membership: Membership) -> None:
    MembershipFactory.create(tenant=admin_membership.tenant, roles=["admin"])
    url = f"/api/v1/{admin_membership.tenant.slug}/members/{admin_membership.id}/"

    response = client_as(admin_membership).delete(url)

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=admin_membership.pk).exists()


def test_operators_outside_the_api_can_still_remove_the_last_admin(admin_membership: Membership) -> None:
    services.membership_delete(membership=admin_membership)

    assert not Membership.objects.filter(pk=admin_membership.pk).exists()


def test_switching_the_default_tenant_is_audited(admin_membership: Membership) -> None:
    other = MembershipFactory.create(user=admin_membership.user, roles=["member"])

    services.membership_make_default(membership=other)

    event = AuditEvent.objects.get(action="membership.made_default")
    assert (event.tenant_id, event.target_id) == (other.tenant_id, str(other.pk))
