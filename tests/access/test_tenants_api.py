"""/api/v1/tenants/: the tenants a caller belongs to; staff create new ones."""

from __future__ import annotations

import pytest

from aihub.access import services
from aihub.access.models import AuditEvent, Membership, Role, Tenant
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import DEFAULT_ROLE_NAMES, ClientAs, assert_invalid, assert_problem, client_for

pytestmark = pytest.mark.django_db


def test_the_list_shows_only_the_callers_tenants_in_the_envelope(client_as: ClientAs) -> None:
    user = UserFactory.create()
    first = MembershipFactory.create(user=user)
    second = MembershipFactory.create(user=user)
    TenantFactory.create()

    response = client_as(first).get("/api/v1/tenants/")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    assert body["offset"] == 0
    assert body["limit"] > 0
    assert [t["slug"] for t in body["items"]] == sorted([first.tenant.slug, second.tenant.slug])


def test_the_list_leaves_out_inactive_tenants(client_as: ClientAs, membership: Membership) -> None:
    closed = MembershipFactory.create(user=membership.user)
    services.tenant_update(tenant=closed.tenant, is_active=False)

    response = client_as(membership).get("/api/v1/tenants/")

    assert [t["slug"] for t in response.json()["items"]] == [membership.tenant.slug]


def test_a_tenant_restricted_token_lists_only_its_tenant(client_as: ClientAs, membership: Membership) -> None:
    other = MembershipFactory.create(user=membership.user)

    response = client_as(other, tenant=other.tenant).get("/api/v1/tenants/")

    assert [t["slug"] for t in response.json()["items"]] == [other.tenant.slug]


def test_a_member_reads_their_tenant(client_as: ClientAs, membership: Membership) -> None:
    response = client_as(membership).get(f"/api/v1/tenants/{membership.tenant.slug}/")

    assert response.status_code == 200
    assert response.json()["slug"] == membership.tenant.slug
    assert response.json()["id"] == str(membership.tenant.id)


def test_a_tenant_the_caller_does_not_belong_to_is_not_found(client_as: ClientAs, membership: Membership) -> None:
    stranger = TenantFactory.create()

    assert_problem(client_as(membership).get(f"/api/v1/tenants/{stranger.slug}/"), 404)
    assert_problem(client_as(membership).get("/api/v1/tenants/no-such-tenant/"), 404)


def test_staff_create_a_tenant_and_become_its_admin_with_the_default_roles_seeded() -> None:
    staff = UserFactory.create(is_staff=True)

    response = client_for(staff).post("/api/v1/tenants/", {"slug": "acme", "name": "Acme", "rule_ceiling": ["aihub.>"]})

    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "acme"
    assert response.json()["rule_ceiling"] == ["aihub.>"]
    tenant = Tenant.objects.get(slug="acme")
    assert sorted(Role.objects.filter(tenant=tenant).values_list("name", flat=True)) == DEFAULT_ROLE_NAMES
    assert Role.objects.get(tenant=tenant, name="member").rules == ["aihub.user.>"]
    assert Role.objects.get(tenant=tenant, name="admin").rules == ["aihub.admin.>"]
    membership = Membership.objects.get(tenant=tenant, user=staff)
    assert [role.name for role in membership.roles.all()] == ["admin"]
    assert AuditEvent.objects.filter(action="tenant.created", tenant=tenant, actor=staff).exists()


def test_the_new_tenant_is_usable_at_once_by_its_creator() -> None:
    client = client_for(UserFactory.create(is_staff=True))
    client.post("/api/v1/tenants/", {"slug": "acme", "name": "Acme"})

    response = client.get("/api/v1/acme/roles/")

    assert response.status_code == 200
    assert [r["name"] for r in response.json()["items"]] == DEFAULT_ROLE_NAMES


def test_non_staff_cannot_create_a_tenant(client_as: ClientAs, admin_membership: Membership) -> None:
    response = client_as(admin_membership).post("/api/v1/tenants/", {"slug": "acme", "name": "Acme"})

    assert_problem(response, 403)
    assert not Tenant.objects.filter(slug="acme").exists()


def test_a_tenant_restricted_token_cannot_create_a_tenant(client_as: ClientAs) -> None:
    staff_membership = MembershipFactory.create(user=UserFactory.create(is_staff=True), roles=["admin"])

    response = client_as(staff_membership, tenant=staff_membership.tenant).post(
        "/api/v1/tenants/", {"slug": "acme", "name": "Acme"}
    )

    assert_problem(response, 403)
    assert not Tenant.objects.filter(slug="acme").exists()


@pytest.mark.parametrize("slug", ["active", "tokens", "tenants", "me", "health", "docs", "Active"])
def test_a_reserved_slug_is_refused_with_the_field_named(slug: str) -> None:
    response = client_for(UserFactory.create(is_staff=True)).post("/api/v1/tenants/", {"slug": slug, "name": "X"})

    assert_invalid(response, "slug")
    assert not Tenant.objects.filter(slug=slug).exists()


def test_a_duplicate_slug_is_refused_with_the_field_named() -> None:
    TenantFactory.create(slug="acme")

    response = client_for(UserFactory.create(is_staff=True)).post("/api/v1/tenants/", {"slug": "acme", "name": "Again"})

    assert_invalid(response, "slug")
    assert Tenant.objects.get(slug="acme").name == "Acme"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "not a slug", "name": "X"}, "slug"),
        ({"slug": "acme"}, "name"),
        ({"slug": "acme", "name": "X", "rule_ceiling": ["nope.user.>"]}, "rule_ceiling"),
        ({"slug": "acme", "name": "X", "rule_ceiling": "aihub.>"}, "rule_ceiling"),
        ({"slug": "acme", "name": "X", "is_active": False}, "is_active"),
    ],
)
def test_bad_input_is_a_validation_problem_and_creates_nothing(body: dict[str, object], field: str) -> None:
    staff = UserFactory.create(is_staff=True)

    assert_invalid(client_for(staff).post("/api/v1/tenants/", body), field)
    assert not Tenant.objects.exists()
    assert not Role.objects.exists()
