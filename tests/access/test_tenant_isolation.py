"""Nobody in tenant A reads or changes anything of tenant B, whatever URL they build with B's slug and ids.

Every resource type the access API exposes is in the table below; a new tenant-scoped resource adds its rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from rest_framework.test import APIClient

from aihub.access import services
from aihub.access.models import ApiToken, AuditEvent, Membership, Role, Tenant
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory
from tests.helpers import PROBLEM, ClientAs

pytestmark = pytest.mark.django_db

Request = tuple[str, str, dict[str, Any] | None]
B_IDS = ("b_role", "b_admin_role", "b_member", "b_token")


@dataclass
class World:
    a: Tenant
    b: Tenant
    a_admin: Membership
    a_member: Membership
    b_admin: Membership
    b_role: Role
    b_token: ApiToken
    ghost_ids: dict[str, str] = field(default_factory=lambda: {name: str(uuid.uuid4()) for name in B_IDS})

    def values(self, *, ghost: bool = False) -> dict[str, str]:
        """What the URL templates name: B's real slug and ids, or (``ghost``) ones that exist nowhere."""
        if ghost:
            return {"b": "tenant-ghost", **self.ghost_ids}
        return {
            "b": self.b.slug,
            "b_role": str(self.b_role.id),
            "b_admin_role": str(Role.objects.get(tenant=self.b, name="admin").id),
            "b_member": str(self.b_admin.id),
            "b_token": str(self.b_token.id),
        }

    def fill(self, template: str, *, caller: Membership, ghost: bool = False) -> str:
        return template.format(a=self.a.slug, self=caller.user.username, **self.values(ghost=ghost))


@pytest.fixture
def world(db: None) -> World:
    a, b = TenantFactory.create(slug="tenant-a"), TenantFactory.create(slug="tenant-b")
    b_admin = MembershipFactory.create(tenant=b, roles=["admin"])
    return World(
        a=a,
        b=b,
        a_admin=MembershipFactory.create(tenant=a, roles=["admin"]),
        a_member=MembershipFactory.create(tenant=a, roles=["member"]),
        b_admin=b_admin,
        b_role=services.role_create(tenant=b, name="b-secret-role", rules=["aihub.user.agents.secret"]),
        b_token=ApiTokenFactory.create(user=b_admin.user, tenant=b),
    )


def everything(world: World) -> dict[str, Any]:
    """The whole access state, minus bookkeeping that reads legitimately touch (a token's last use)."""
    return {
        "tenants": list(Tenant.objects.order_by("id").values_list("id", "slug", "name", "rule_ceiling", "is_active")),
        "roles": list(Role.objects.order_by("id").values_list("id", "tenant_id", "name", "description", "rules")),
        "memberships": [
            (m.id, m.user_id, m.tenant_id, m.is_default, sorted(str(r.id) for r in m.roles.all()))
            for m in Membership.objects.order_by("id").prefetch_related("roles")
        ],
        "tokens": list(ApiToken.objects.order_by("id").values_list("id", "user_id", "tenant_id", "revoked_at")),
        "b_audit": AuditEvent.objects.filter(tenant=world.b).count(),
    }


B_ROLE = {"name": "planted", "rules": ["aihub.admin.>"]}
B_ROLES_CHANGE = {"rules": ["aihub.admin.>"], "description": "owned"}

# (method, URL template, body). Templates name tenant A's slug {a}, B's {b}, and ids of B's objects.
CROSS_TENANT_REQUESTS: list[Request] = [
    # Tenant
    ("get", "/api/v1/tenants/{b}/", None),
    ("patch", "/api/v1/tenants/{b}/", {"name": "owned"}),
    ("delete", "/api/v1/tenants/{b}/", None),
    # Roles, through B's slug
    ("get", "/api/v1/{b}/roles/", None),
    ("post", "/api/v1/{b}/roles/", B_ROLE),
    ("get", "/api/v1/{b}/roles/{b_role}/", None),
    ("patch", "/api/v1/{b}/roles/{b_role}/", B_ROLES_CHANGE),
    ("delete", "/api/v1/{b}/roles/{b_role}/", None),
    # Roles, B's ids under A's slug (and `active`, which is A for these callers)
    ("get", "/api/v1/{a}/roles/{b_role}/", None),
    ("patch", "/api/v1/{a}/roles/{b_role}/", B_ROLES_CHANGE),
    ("delete", "/api/v1/{a}/roles/{b_role}/", None),
    ("patch", "/api/v1/{a}/roles/{b_admin_role}/", B_ROLES_CHANGE),
    ("get", "/api/v1/active/roles/{b_role}/", None),
    ("delete", "/api/v1/active/roles/{b_role}/", None),
    # Members, through B's slug
    ("get", "/api/v1/{b}/members/", None),
    ("post", "/api/v1/{b}/members/", {"username": "{self}", "roles": ["admin"]}),
    ("get", "/api/v1/{b}/members/{b_member}/", None),
    ("patch", "/api/v1/{b}/members/{b_member}/", {"roles": []}),
    ("delete", "/api/v1/{b}/members/{b_member}/", None),
    # Members, B's ids under A's slug
    ("get", "/api/v1/{a}/members/{b_member}/", None),
    ("patch", "/api/v1/{a}/members/{b_member}/", {"roles": []}),
    ("delete", "/api/v1/{a}/members/{b_member}/", None),
    ("get", "/api/v1/active/members/{b_member}/", None),
    # Another user's API token, and minting one for a tenant the caller is not in
    ("get", "/api/v1/tokens/{b_token}/", None),
    ("delete", "/api/v1/tokens/{b_token}/", None),
    ("post", "/api/v1/tokens/", {"name": "sneaky", "tenant": "{b}"}),
    # The audit log is for operators (admin) only: no API route reveals it, in any tenant
    ("get", "/api/v1/audit/", None),
    ("get", "/api/v1/audit-events/", None),
    ("get", "/api/v1/{a}/audit/", None),
    ("get", "/api/v1/{b}/audit/", None),
    ("get", "/api/v1/{a}/audit-events/", None),
    ("get", "/api/v1/{b}/audit-events/", None),
]


def _send(client: APIClient, world: World, caller: Membership, request: Request, *, ghost: bool = False) -> Any:
    method, template, body = request
    send = getattr(client, method)
    url = world.fill(template, caller=caller, ghost=ghost)
    if body is None:
        return send(url)
    filled = {
        key: world.fill(value, caller=caller, ghost=ghost) if isinstance(value, str) else value
        for key, value in body.items()
    }
    return send(url, filled)


def _as_seen(response: Any, world: World, *, ghost: bool) -> tuple[int, dict[str, Any]]:
    """Status and problem body with B's slug and ids (or the ghost's) put back as names, for comparison."""
    body = response.json()
    body.pop("correlation_id", None)
    text = json.dumps(body)
    for name, value in world.values(ghost=ghost).items():
        text = text.replace(value, "{" + name + "}")
    return response.status_code, json.loads(text)


def assert_as_if_b_did_not_exist(client: APIClient, world: World, caller: Membership, request: Request) -> None:
    """The answer about B's objects is exactly the answer about objects that exist nowhere."""
    real = _send(client, world, caller, request)
    assert real["Content-Type"] == PROBLEM, real.content
    ghost = _send(client, world, caller, request, ghost=True)
    assert _as_seen(real, world, ghost=False) == _as_seen(ghost, world, ghost=True)


TABLE = pytest.mark.parametrize(
    "request_", CROSS_TENANT_REQUESTS, ids=[f"{m} {t}" for m, t, _ in CROSS_TENANT_REQUESTS]
)


@TABLE
def test_tenant_a_admin_never_reaches_tenant_b(client_as: ClientAs, world: World, request_: Request) -> None:
    """Even the strongest caller of A gets 404 (or 405 where no such route exists), as if B were not there."""
    client = client_as(world.a_admin)
    before = everything(world)

    response = _send(client, world, world.a_admin, request_)

    assert response.status_code in (404, 405), (response.status_code, response.content)
    assert_as_if_b_did_not_exist(client, world, world.a_admin, request_)
    assert everything(world) == before


@TABLE
def test_tenant_a_member_never_reaches_tenant_b(client_as: ClientAs, world: World, request_: Request) -> None:
    """A plain member of A may be refused a write in A (403) before anything about B is even looked up."""
    client = client_as(world.a_member)
    before = everything(world)

    response = _send(client, world, world.a_member, request_)

    assert response.status_code in (403, 404, 405), (response.status_code, response.content)
    assert_as_if_b_did_not_exist(client, world, world.a_member, request_)
    assert everything(world) == before


def test_a_token_restricted_to_a_never_reaches_b_even_when_its_user_belongs_to_both(
    client_as: ClientAs, world: World
) -> None:
    both = MembershipFactory.create(tenant=world.b, user=world.a_admin.user, roles=["admin"])
    client = client_as(world.a_admin, tenant=world.a)
    before = everything(world)

    for request in [
        ("get", "/api/v1/{b}/roles/", None),
        ("post", "/api/v1/{b}/roles/", B_ROLE),
        ("patch", "/api/v1/{b}/roles/{b_role}/", B_ROLES_CHANGE),
        ("delete", "/api/v1/{b}/members/{b_member}/", None),
        ("get", "/api/v1/tenants/{b}/", None),
    ]:
        response = _send(client, world, both, request)
        assert response.status_code in (403, 404), (request, response.status_code)

    assert everything(world) == before


def test_the_same_requests_do_work_for_bs_own_admin(client_as: ClientAs, world: World) -> None:
    """The table's URLs are real: B's admin reaches them, so the refusals above are about who asks."""
    client, caller = client_as(world.b_admin), world.b_admin

    assert client.get(world.fill("/api/v1/tenants/{b}/", caller=caller)).status_code == 200
    assert client.get(world.fill("/api/v1/{b}/roles/{b_role}/", caller=caller)).status_code == 200
    assert client.get(world.fill("/api/v1/{b}/members/{b_member}/", caller=caller)).status_code == 200
    assert client.get(world.fill("/api/v1/tokens/{b_token}/", caller=caller)).status_code == 200
    response = client.patch(world.fill("/api/v1/{b}/roles/{b_role}/", caller=caller), {"description": "mine"})
    assert response.status_code == 200
