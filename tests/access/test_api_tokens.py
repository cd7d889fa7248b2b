"""API tokens end to end: the service, the /api/v1/tokens/ API, and tokens as credentials on every route."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model
from rest_framework.test import APIClient

from aihub.access import services
from aihub.access.models import ApiToken, AuditEvent, Membership, Role
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from tests.helpers import assert_problem, bearer

pytestmark = pytest.mark.django_db


def token_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "access_apitoken"')]


@pytest.fixture
def member_in_two_tenants() -> tuple[Membership, Membership]:
    """One user, a member of tenant B first (so B is the default) and then of tenant A."""
    user = UserFactory.create()
    in_b = MembershipFactory.create(user=user, tenant=TenantFactory.create(slug="tenant-b"), roles=["admin"])
    in_a = MembershipFactory.create(user=user, tenant=TenantFactory.create(slug="tenant-a"), roles=["admin"])
    assert in_b.is_default
    return in_a, in_b


# --- Creating, listing, showing --------------------------------------------------------------------------


def test_the_secret_is_returned_by_the_create_response_only(
    membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    client = client_as(membership)

    created = client.post("/api/v1/tokens/", {"name": "laptop"})

    assert created.status_code == 201, created.content
    secret = created.json()["token"]
    assert secret.startswith("aih_")
    token_id = created.json()["id"]
    listed = client.get("/api/v1/tokens/")
    shown = client.get(f"/api/v1/tokens/{token_id}/")
    assert listed.status_code == shown.status_code == 200
    assert token_id in [item["id"] for item in listed.json()["items"]]
    for response in (listed, shown):
        assert secret not in response.content.decode()
        assert "token" not in response.json()
    assert "token" not in listed.json()["items"][0]
    assert shown.json()["prefix"] == f"aih_{ApiToken.objects.get(pk=token_id).public_id}_…"


def test_the_created_secret_authenticates_as_its_user(
    membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    secret = client_as(membership).post("/api/v1/tokens/", {"name": "ci"}).json()["token"]

    me = bearer(secret).get("/api/v1/me")

    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == membership.user.username
    assert me.json()["credential"] == {"method": "api_token", "scopes": None, "token_tenant": None}


def test_only_a_sha256_hash_of_the_token_is_stored(membership: Membership) -> None:
    token, raw = services.api_token_create(user=membership.user, name="hashed")
    secret_part = raw.split("_", 2)[2]

    row = ApiToken.objects.filter(pk=token.pk).values().get()

    assert row["secret_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    for value in row.values():
        assert raw not in str(value)
        assert secret_part not in str(value)


def test_every_token_gets_its_own_public_id_and_secret(membership: Membership) -> None:
    first, first_raw = services.api_token_create(user=membership.user, name="one")
    second, second_raw = services.api_token_create(user=membership.user, name="two")

    assert first.public_id != second.public_id
    assert first_raw.split("_", 2)[2] != second_raw.split("_", 2)[2]
    assert len(first_raw.split("_", 2)[2]) >= 43  # 32 random bytes, URL-safe base64


def test_creating_a_token_is_audited_without_its_secret(
    membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    secret = client_as(membership).post("/api/v1/tokens/", {"name": "audited"}).json()["token"]

    event = AuditEvent.objects.filter(action="token.created", details__name="audited").get()

    assert event.actor == membership.user
    assert secret.split("_", 2)[2] not in str(AuditEvent.objects.filter(pk=event.pk).values().get())


def test_an_expiry_in_the_past_is_a_validation_problem(
    membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    client = client_as(membership)
    before = ApiToken.objects.count()

    response = client.post("/api/v1/tokens/", {"name": "late", "expires_at": "2000-01-01T00:00:00Z"})

    body = assert_problem(response, 400)
    assert [error["field"] for error in body["errors"]] == ["expires_at"]
    assert ApiToken.objects.count() == before


def test_a_token_cannot_be_restricted_to_a_tenant_its_user_does_not_belong_to(
    membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    stranger = TenantFactory.create()

    response = client_as(membership).post("/api/v1/tokens/", {"name": "x", "tenant": stranger.slug})

    assert_problem(response, 404)
    assert not ApiToken.objects.filter(tenant=stranger).exists()


# --- Refusals --------------------------------------------------------------------------------------------


def test_a_wrong_secret_with_a_right_public_id_is_refused(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    forged = f"aih_{token.public_id}_{'A' * 43}"

    response = bearer(forged).get("/api/v1/me")

    body = assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "invalid" in body["detail"]


def test_an_unknown_public_id_is_refused(db: None) -> None:
    assert_problem(bearer("aih_000000000000_" + "A" * 43).get("/api/v1/me"), 401)


@pytest.mark.parametrize("raw", ["aih_", "aih_nounderscore", "aih__", "aih_" + "x" * 300])
def test_a_malformed_token_is_refused_by_the_service(db: None, raw: str) -> None:
    assert services.api_token_authenticate(raw=raw) is None


def test_an_expired_token_is_refused_with_a_problem(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user, expires_at=timezone.now() + timedelta(seconds=0.5))
    assert bearer(token.raw).get("/api/v1/me").status_code == 200
    # Time passes: the expiry is now behind us (the row, remembered since the first request, is unchanged).
    time.sleep(0.6)

    response = bearer(token.raw).get("/api/v1/me")

    assert_problem(response, 401)


def test_a_revoked_token_is_refused_with_a_problem(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    services.api_token_revoke(token=token, actor=membership.user)

    response = bearer(token.raw).get(f"/api/v1/{membership.tenant.slug}/roles/")

    assert_problem(response, 401)


def test_a_token_of_a_disabled_user_is_refused(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    type(membership.user).objects.filter(pk=membership.user.pk).update(is_active=False)

    assert_problem(bearer(token.raw).get("/api/v1/me"), 401)


# --- Revocation ------------------------------------------------------------------------------------------


def test_delete_revokes_the_token_and_keeps_its_row(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)

    response = client.delete(f"/api/v1/tokens/{token.pk}/")

    assert response.status_code == 204, response.content
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client.get(f"/api/v1/tokens/{token.pk}/").json()["revoked_at"] is not None
    assert_problem(bearer(token.raw).get("/api/v1/me"), 401)
    assert AuditEvent.objects.filter(action="token.revoked", target_id=str(token.pk), actor=membership.user).exists()


def test_revoking_twice_keeps_the_first_revocation_time(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)
    client.delete(f"/api/v1/tokens/{token.pk}/")
    first = ApiToken.objects.get(pk=token.pk).revoked_at

    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204

    assert ApiToken.objects.get(pk=token.pk).revoked_at == first
    assert AuditEvent.objects.filter(action="token.revoked", target_id=str(token.pk)).count() == 1


def test_a_token_can_revoke_itself(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)

    assert bearer(token.raw).delete(f"/api/v1/tokens/{token.pk}/").status_code == 204

    assert_problem(bearer(token.raw).get("/api/v1/me"), 401)


def test_tokens_of_other_users_are_not_found(membership: Membership) -> None:
    others = ApiTokenFactory.create(user=UserFactory.create())
    client = bearer(ApiTokenFactory.create(user=membership.user).raw)

    assert_problem(client.get(f"/api/v1/tokens/{others.pk}/"), 404)
    assert_problem(client.delete(f"/api/v1/tokens/{others.pk}/"), 404)
    assert str(others.pk) not in [item["id"] for item in client.get("/api/v1/tokens/").json()["items"]]
    assert ApiToken.objects.get(pk=others.pk).revoked_at is None


# --- Last used -------------------------------------------------------------------------------------------


def test_last_used_at_is_recorded_when_the_token_is_used(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    assert token.last_used_at is None
    before = timezone.now()

    bearer(token.raw).get("/api/v1/me")

    token.refresh_from_db()
    assert token.last_used_at is not None
    assert before <= token.last_used_at <= timezone.now()


@override_settings(AIHUB={"TOKEN_LAST_USED_RESOLUTION_SECONDS": 0.5})
def test_last_used_at_is_written_at_most_once_per_resolution_window(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    client = bearer(token.raw)

    with CaptureQueriesContext(connection) as first:
        client.get("/api/v1/me")
    with CaptureQueriesContext(connection) as second:
        client.get("/api/v1/me")
        client.get("/api/v1/tokens/")

    assert len(token_updates(first)) == 1
    assert token_updates(second) == []
    # Once the window has passed, the next use writes again.
    earlier = ApiToken.objects.get(pk=token.pk).last_used_at
    time.sleep(0.6)
    with CaptureQueriesContext(connection) as later:
        client.get("/api/v1/me")
    assert len(token_updates(later)) == 1
    token.refresh_from_db()
    assert token.last_used_at is not None and earlier is not None and token.last_used_at > earlier


def test_a_concurrent_use_that_lost_the_race_does_not_write_again(membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)
    # Another process recorded the use after this one loaded the row but before it wrote.
    stale = ApiToken.objects.get(pk=token.pk)
    services.api_token_authenticate(raw=token.raw)
    recorded = ApiToken.objects.get(pk=token.pk).last_used_at

    services.api_token_record_use(token=stale, now=timezone.now())

    assert ApiToken.objects.get(pk=token.pk).last_used_at == recorded


# --- Tenant restriction ----------------------------------------------------------------------------------


def test_a_restricted_token_works_on_its_tenant_and_on_active(
    member_in_two_tenants: tuple[Membership, Membership],
) -> None:
    in_a, _in_b = member_in_two_tenants
    client = bearer(ApiTokenFactory.create(user=in_a.user, tenant=in_a.tenant).raw)
    roles_of_a = {str(pk) for pk in in_a.tenant.roles.values_list("pk", flat=True)}

    by_slug = client.get("/api/v1/tenant-a/roles/")
    by_active = client.get("/api/v1/active/roles/")

    assert by_slug.status_code == by_active.status_code == 200
    assert {item["id"] for item in by_slug.json()["items"]} == roles_of_a
    # `active` means the token's tenant, not the user's default tenant B.
    assert {item["id"] for item in by_active.json()["items"]} == roles_of_a


def test_a_restricted_token_is_forbidden_on_another_tenant_of_its_user(
    member_in_two_tenants: tuple[Membership, Membership],
) -> None:
    in_a, _in_b = member_in_two_tenants
    client = bearer(ApiTokenFactory.create(user=in_a.user, tenant=in_a.tenant).raw)

    body = assert_problem(client.get("/api/v1/tenant-b/roles/"), 403)
    assert "restricted" in body["detail"]
    assert_problem(client.post("/api/v1/tenant-b/roles/", {"name": "x", "rules": ["aihub.user.>"]}), 403)
    assert not Role.objects.filter(tenant__slug="tenant-b", name="x").exists()


def test_a_restricted_token_shows_only_its_tenant_in_me(
    member_in_two_tenants: tuple[Membership, Membership],
) -> None:
    in_a, _in_b = member_in_two_tenants

    me = bearer(ApiTokenFactory.create(user=in_a.user, tenant=in_a.tenant).raw).get("/api/v1/me").json()

    assert [t["slug"] for t in me["tenants"]] == ["tenant-a"]
    assert me["credential"]["token_tenant"] == "tenant-a"


def test_a_restricted_token_cannot_mint_an_unrestricted_or_foreign_token(
    member_in_two_tenants: tuple[Membership, Membership],
) -> None:
    in_a, _in_b = member_in_two_tenants
    client = bearer(ApiTokenFactory.create(user=in_a.user, tenant=in_a.tenant).raw)
    before = ApiToken.objects.count()

    assert_problem(client.post("/api/v1/tokens/", {"name": "everywhere"}), 403)
    assert_problem(client.post("/api/v1/tokens/", {"name": "elsewhere", "tenant": "tenant-b"}), 403)
    assert ApiToken.objects.count() == before

    same_tenant = client.post("/api/v1/tokens/", {"name": "sibling", "tenant": "tenant-a"})
    assert same_tenant.status_code == 201, same_tenant.content
    assert same_tenant.json()["tenant"] == "tenant-a"


def test_an_oauth2_access_token_cannot_mint_api_tokens(membership: Membership) -> None:
    application = get_application_model().objects.create(
        name="service",
        user=membership.user,
        client_type="confidential",
        authorization_grant_type="client-credentials",
    )
    access_token = get_access_token_model().objects.create(
        user=None,
        application=application,
        token="oauth2-access-token-for-minting-test",
        scope="read write",
        expires=timezone.now() + timedelta(hours=1),
    )
    before = ApiToken.objects.count()

    response = bearer(access_token.token).post("/api/v1/tokens/", {"name": "escalate"})

    assert_problem(response, 403)
    assert ApiToken.objects.count() == before
