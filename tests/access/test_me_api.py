"""GET /api/v1/me: who the caller is, where, with which rules, through which credential."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from aihub.access import services
from aihub.access.models import Membership
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ClientAs, assert_problem

pytestmark = pytest.mark.django_db


def test_me_shows_the_user_every_tenant_with_roles_rules_and_ceiling(client_as: ClientAs) -> None:
    user = UserFactory.create(username="ada", email="ada@example.com")
    home = MembershipFactory.create(user=user, roles=["member", "knowledge-admin"])
    capped = MembershipFactory.create(
        user=user, tenant=TenantFactory.create(rule_ceiling=["aihub.user.>"]), roles=["admin"]
    )

    response = client_as(home).get("/api/v1/me")

    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": user.id, "username": "ada", "email": "ada@example.com"}
    assert body["is_staff"] is False
    assert body["tenants"] == [
        {
            "id": str(home.tenant.id),
            "slug": home.tenant.slug,
            "name": home.tenant.name,
            "is_default": True,
            "roles": ["knowledge-admin", "member"],
            "rules": ["aihub.user.>", "aihub.admin.collections.>"],
            "rule_ceiling": [],
        },
        {
            "id": str(capped.tenant.id),
            "slug": capped.tenant.slug,
            "name": capped.tenant.name,
            "is_default": False,
            "roles": ["admin"],
            "rules": ["aihub.admin.>"],
            "rule_ceiling": ["aihub.user.>"],
        },
    ]


def test_me_names_the_api_token_credential(client_as: ClientAs, membership: Membership) -> None:
    credential = client_as(membership).get("/api/v1/me").json()["credential"]

    assert credential == {"method": "api_token", "scopes": None, "token_tenant": None}


def test_a_tenant_restricted_token_shows_only_its_tenant(client_as: ClientAs, membership: Membership) -> None:
    other = MembershipFactory.create(user=membership.user, roles=["viewer"])

    body = client_as(other, tenant=other.tenant).get("/api/v1/me").json()

    assert [t["slug"] for t in body["tenants"]] == [other.tenant.slug]
    assert body["credential"]["token_tenant"] == other.tenant.slug


def test_the_default_tenant_comes_first(client_as: ClientAs) -> None:
    user = UserFactory.create()
    first = MembershipFactory.create(user=user)
    second = MembershipFactory.create(user=user)
    services.membership_make_default(membership=second)

    tenants = client_as(first).get("/api/v1/me").json()["tenants"]

    assert [(t["slug"], t["is_default"]) for t in tenants] == [(second.tenant.slug, True), (first.tenant.slug, False)]


def test_inactive_tenants_are_left_out(client_as: ClientAs, membership: Membership) -> None:
    closed = MembershipFactory.create(user=membership.user)
    services.tenant_update(tenant=closed.tenant, is_active=False)

    tenants = client_as(membership).get("/api/v1/me").json()["tenants"]

    assert [t["slug"] for t in tenants] == [membership.tenant.slug]


def test_a_user_without_tenants_still_learns_who_they_are(client_as: ClientAs, membership: Membership) -> None:
    services.membership_delete(membership=membership)

    body = client_as(membership).get("/api/v1/me").json()

    assert body["user"]["username"] == membership.user.username
    assert body["tenants"] == []


def test_me_names_an_oauth2_credential_and_its_scopes(membership: Membership) -> None:
    application = Application.objects.create(
        name="frontend",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        user=membership.user,
    )
    AccessToken.objects.create(
        user=membership.user,
        application=application,
        token="oauth2-access-token-for-me",
        scope="read",
        expires=timezone.now() + timedelta(hours=1),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer oauth2-access-token-for-me")

    body = client.get("/api/v1/me").json()

    assert body["credential"] == {"method": "oauth2", "scopes": ["read"], "token_tenant": None}
    assert [t["slug"] for t in body["tenants"]] == [membership.tenant.slug]


def test_me_names_a_session_credential(membership: Membership) -> None:
    client = APIClient()
    client.force_login(membership.user)

    body = client.get("/api/v1/me").json()

    assert body["credential"] == {"method": "session", "scopes": None, "token_tenant": None}


def test_me_needs_credentials() -> None:
    assert_problem(APIClient().get("/api/v1/me"), 401)


def test_me_is_read_only(client_as: ClientAs, membership: Membership) -> None:
    assert_problem(client_as(membership).post("/api/v1/me", {}), 405)
