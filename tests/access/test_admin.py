"""The operators' admin, driven through the Django test client as a superuser."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from aihub.access import services
from aihub.access.models import ApiToken, AuditEvent, ExternalIdentity, Membership, Role, Tenant
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from tests.helpers import API_TOKEN_SECRET, admin_url

pytestmark = pytest.mark.django_db


def form_errors(response: Any) -> str:
    """Every error the admin form shows, as one string to match against."""
    assert response.status_code == 200, response.status_code
    adminform = response.context["adminform"]
    return str(adminform.form.errors)


# --- Pages load ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Tenant, Role, Membership, ApiToken, AuditEvent, ExternalIdentity])
def test_every_changelist_loads(admin_site: Client, admin_membership: Membership, model: type[Any]) -> None:
    ApiTokenFactory.create(user=admin_membership.user, tenant=admin_membership.tenant)
    ExternalIdentity.objects.create(user=admin_membership.user, issuer="https://sso.example.com", subject="s-1")

    response = admin_site.get(admin_url(model, "changelist"))

    assert response.status_code == 200


@pytest.mark.parametrize("model", [Tenant, Role, Membership, ApiToken])
def test_every_add_form_loads(admin_site: Client, admin_membership: Membership, model: type[Any]) -> None:
    assert admin_site.get(admin_url(model, "add")).status_code == 200


def test_every_change_page_loads(admin_site: Client, admin_membership: Membership) -> None:
    tenant = admin_membership.tenant
    token = ApiTokenFactory.create(user=admin_membership.user, tenant=tenant)
    identity = ExternalIdentity.objects.create(
        user=admin_membership.user, issuer="https://sso.example.com", subject="1"
    )
    role = tenant.roles.get(name="viewer")
    event = AuditEvent.objects.filter(tenant=tenant).first()
    assert event is not None

    for model, obj in [
        (Tenant, tenant),
        (Role, role),
        (Membership, admin_membership),
        (ApiToken, token),
        (AuditEvent, event),
        (ExternalIdentity, identity),
    ]:
        response = admin_site.get(admin_url(model, "change", obj.pk))
        assert response.status_code == 200, model

    tenant_page = admin_site.get(admin_url(Tenant, "change", tenant.pk)).content.decode()
    assert "aihub.user.agents.&gt;" in tenant_page  # the inline lists the roles with their rules


def test_admin_pages_are_for_staff_only(client: Client, membership: Membership) -> None:
    client.force_login(membership.user)

    response = client.get(admin_url(Tenant, "changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- Tenants ---------------------------------------------------------------------------------------------


def test_creating_a_tenant_in_the_admin_seeds_the_default_roles(admin_site: Client) -> None:
    owner = UserFactory.create()

    response = admin_site.post(
        admin_url(Tenant, "add"),
        {"slug": "acme", "name": "Acme", "rule_ceiling": "aihub.user.>\r\naihub.admin.agents.>", "owner": owner.pk},
    )

    assert response.status_code == 302, form_errors(response)
    tenant = Tenant.objects.get(slug="acme")
    assert set(tenant.roles.values_list("name", flat=True)) == set(services.DEFAULT_ROLES)
    assert tenant.rule_ceiling == ["aihub.user.>", "aihub.admin.agents.>"]
    membership = Membership.objects.get(tenant=tenant, user=owner)
    assert list(membership.roles.values_list("name", flat=True)) == ["admin"]
    assert response["Location"] == admin_url(Tenant, "changelist")


def test_a_reserved_tenant_slug_is_a_form_error(admin_site: Client) -> None:
    response = admin_site.post(admin_url(Tenant, "add"), {"slug": "tokens", "name": "Tokens"})

    assert "is reserved" in form_errors(response)
    assert not Tenant.objects.filter(slug="tokens").exists()


def test_changing_a_tenant_keeps_its_slug_and_updates_its_ceiling(admin_site: Client) -> None:
    tenant = TenantFactory.create(slug="acme")

    response = admin_site.post(
        admin_url(Tenant, "change", tenant.pk),
        {"slug": "renamed", "name": "Acme Inc", "rule_ceiling": "aihub.user.>", "is_active": "on"}
        | {"roles-TOTAL_FORMS": "0", "roles-INITIAL_FORMS": "0"},
    )

    assert response.status_code == 302, form_errors(response)
    tenant.refresh_from_db()
    assert (tenant.slug, tenant.name, tenant.rule_ceiling) == ("acme", "Acme Inc", ["aihub.user.>"])


def test_deleting_a_tenant_with_members_and_tokens_goes_through_the_service(admin_site: Client) -> None:
    member = MembershipFactory.create(tenant=TenantFactory.create(slug="doomed"))
    ApiTokenFactory.create(user=member.user, tenant=member.tenant)

    response = admin_site.post(admin_url(Tenant, "delete", member.tenant.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Tenant.objects.filter(slug="doomed").exists()
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.get(action="tenant.deleted").details["slug"] == "doomed"


def test_a_user_with_tokens_and_an_sso_identity_can_be_deleted_in_the_admin(
    admin_site: Client, membership: Membership
) -> None:
    # The admin refuses a delete that cascades into anything the operator may not delete.
    ApiTokenFactory.create(user=membership.user)
    ExternalIdentity.objects.create(user=membership.user, issuer="https://sso.example.com", subject="s-1")

    response = admin_site.post(reverse("admin:auth_user_delete", args=[membership.user.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not ApiToken.objects.exists()
    assert not ExternalIdentity.objects.exists()


# --- Roles -----------------------------------------------------------------------------------------------


def test_a_bad_rule_in_the_role_form_is_a_form_error_not_a_crash(admin_site: Client) -> None:
    tenant = TenantFactory.create()

    response = admin_site.post(
        admin_url(Role, "add"),
        {"tenant": tenant.pk, "name": "odd", "description": "", "rules": "aihub.user.agents.>\r\nagents.everything"},
    )

    assert "must start with" in form_errors(response)
    assert not Role.objects.filter(tenant=tenant, name="odd").exists()


def test_a_bad_rule_in_an_existing_role_leaves_the_role_unchanged(admin_site: Client) -> None:
    role = TenantFactory.create().roles.get(name="viewer")
    before = list(role.rules)

    response = admin_site.post(
        admin_url(Role, "change", role.pk), {"description": "changed", "rules": "aihub.user.>.agents"}
    )

    assert "may only be the last segment" in form_errors(response)
    role.refresh_from_db()
    assert role.rules == before


def test_a_role_name_taken_in_the_tenant_is_a_form_error(admin_site: Client) -> None:
    tenant = TenantFactory.create()

    response = admin_site.post(
        admin_url(Role, "add"), {"tenant": tenant.pk, "name": "member", "description": "", "rules": "aihub.user.>"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert tenant.roles.filter(name="member").count() == 1


def test_roles_are_created_and_changed_with_one_rule_per_line(admin_site: Client) -> None:
    tenant = TenantFactory.create()

    admin_site.post(
        admin_url(Role, "add"),
        {"tenant": tenant.pk, "name": "bots", "description": "Bots", "rules": " aihub.user.agents.bot \r\n\r\n"},
    )
    role = Role.objects.get(tenant=tenant, name="bots")
    assert role.rules == ["aihub.user.agents.bot"]

    response = admin_site.post(
        admin_url(Role, "change", role.pk),
        {"description": "Bots", "rules": "aihub.user.agents.bot\naihub.user.threads.>"},
    )

    assert response.status_code == 302, form_errors(response)
    role.refresh_from_db()
    assert role.rules == ["aihub.user.agents.bot", "aihub.user.threads.>"]


# --- Memberships -----------------------------------------------------------------------------------------


def test_a_membership_is_created_with_roles_of_its_tenant(admin_site: Client) -> None:
    tenant, user = TenantFactory.create(), UserFactory.create()

    response = admin_site.post(
        admin_url(Membership, "add"), {"user": user.pk, "tenant": tenant.pk, "role_names": ["viewer", "agent-user"]}
    )

    assert response.status_code == 302, form_errors(response)
    membership = Membership.objects.get(user=user, tenant=tenant)
    assert sorted(membership.roles.values_list("name", flat=True)) == ["agent-user", "viewer"]
    assert membership.is_default  # the user's first tenant


def test_a_role_of_another_tenant_is_a_form_error(admin_site: Client) -> None:
    tenant, user = TenantFactory.create(), UserFactory.create()
    other = TenantFactory.create()
    services.role_create(tenant=other, name="special", rules=["aihub.user.>"])

    response = admin_site.post(
        admin_url(Membership, "add"), {"user": user.pk, "tenant": tenant.pk, "role_names": ["special"]}
    )

    assert "has no role named special" in form_errors(response)
    assert not Membership.objects.filter(user=user).exists()


def test_the_change_form_offers_only_roles_of_the_memberships_tenant(
    admin_site: Client, membership: Membership
) -> None:
    services.role_create(tenant=TenantFactory.create(), name="elsewhere", rules=["aihub.user.>"])

    response = admin_site.get(admin_url(Membership, "change", membership.pk))

    choices = [value for value, _label in response.context["adminform"].form.fields["role_names"].choices]
    assert sorted(choices) == sorted(services.DEFAULT_ROLES)


def test_changing_a_memberships_roles_and_default_goes_through_the_services(admin_site: Client) -> None:
    first = MembershipFactory.create(roles=["member"])
    second = MembershipFactory.create(user=first.user, roles=["member"])
    assert not second.is_default

    response = admin_site.post(
        admin_url(Membership, "change", second.pk), {"role_names": ["admin", "viewer"], "make_default": "on"}
    )

    assert response.status_code == 302, form_errors(response)
    assert sorted(second.roles.values_list("name", flat=True)) == ["admin", "viewer"]
    second.refresh_from_db()
    first.refresh_from_db()
    assert (second.is_default, first.is_default) == (True, False)


def test_deleting_memberships_in_bulk_goes_through_the_service(admin_site: Client) -> None:
    memberships = [MembershipFactory.create(), MembershipFactory.create()]

    admin_site.post(
        admin_url(Membership, "changelist"),
        {"action": "delete_selected", "_selected_action": [m.pk for m in memberships], "post": "yes"},
    )

    assert not Membership.objects.filter(pk__in=[m.pk for m in memberships]).exists()
    assert AuditEvent.objects.filter(action="membership.deleted").count() == 2


# --- API tokens ------------------------------------------------------------------------------------------


def test_creating_a_token_shows_the_secret_once_and_stores_only_its_hash(
    admin_site: Client, membership: Membership
) -> None:
    expires = timezone.localtime() + timedelta(days=30)

    response = admin_site.post(
        admin_url(ApiToken, "add"),
        {
            "user": membership.user.pk,
            "name": "ci",
            "tenant": membership.tenant.pk,
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secrets_shown = set(API_TOKEN_SECRET.findall(response.content.decode()))
    assert len(secrets_shown) == 1
    secret = secrets_shown.pop()
    token = ApiToken.objects.get(name="ci")
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert services.api_token_authenticate(raw=secret) == token
    assert str(token.tenant_id) == str(membership.tenant.pk)

    # Nowhere afterwards: not on the token's pages, not in a message or cookie.
    for page in (admin_url(ApiToken, "changelist"), admin_url(ApiToken, "change", token.pk)):
        content = admin_site.get(page).content.decode()
        assert secret not in content
        assert token.secret_hash not in content
        assert token.display_prefix in content
    assert secret not in str(admin_site.cookies)


def test_a_token_for_a_tenant_its_user_is_not_in_is_a_form_error(admin_site: Client, membership: Membership) -> None:
    response = admin_site.post(
        admin_url(ApiToken, "add"), {"user": membership.user.pk, "name": "ci", "tenant": TenantFactory.create().pk}
    )

    assert "is not a member" in form_errors(response)
    assert not ApiToken.objects.exists()


def test_a_token_expiring_in_the_past_is_a_form_error(admin_site: Client, membership: Membership) -> None:
    past = timezone.localtime() - timedelta(days=1)

    response = admin_site.post(
        admin_url(ApiToken, "add"),
        {
            "user": membership.user.pk,
            "name": "ci",
            "expires_at_0": past.strftime("%Y-%m-%d"),
            "expires_at_1": past.strftime("%H:%M:%S"),
        },
    )

    assert "must be in the future" in form_errors(response)


def test_tokens_are_listed_by_prefix_and_are_not_editable(admin_site: Client, membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user, name="laptop")

    listing = admin_site.get(admin_url(ApiToken, "changelist")).content.decode()
    edit = admin_site.post(admin_url(ApiToken, "change", token.pk), {"name": "renamed"})

    assert token.display_prefix in listing
    assert token.secret_hash not in listing
    assert edit.status_code == 403
    token.refresh_from_db()
    assert token.name == "laptop"


def test_deleting_a_token_goes_through_the_service(admin_site: Client, operator: User, membership: Membership) -> None:
    token = ApiTokenFactory.create(user=membership.user)

    admin_site.post(admin_url(ApiToken, "delete", token.pk), {"post": "yes"})

    assert not ApiToken.objects.exists()
    event = AuditEvent.objects.get(action="token.deleted")
    assert (event.actor, event.target_id) == (operator, str(token.pk))


def test_unlinking_an_sso_identity_goes_through_the_service(admin_site: Client, membership: Membership) -> None:
    identity = ExternalIdentity.objects.create(user=membership.user, issuer="https://sso.example.com", subject="s-1")

    change = admin_site.post(admin_url(ExternalIdentity, "change", identity.pk), {"subject": "s-2"})
    delete = admin_site.post(admin_url(ExternalIdentity, "delete", identity.pk), {"post": "yes"})

    assert (change.status_code, delete.status_code) == (403, 302)
    assert not ExternalIdentity.objects.exists()
    assert AuditEvent.objects.get(action="identity.unlinked").details["subject"] == "s-1"


def test_the_revoke_action_revokes_and_audits(admin_site: Client, operator: Any, membership: Membership) -> None:
    live = ApiTokenFactory.create(user=membership.user, tenant=membership.tenant)
    already = ApiTokenFactory.create(user=membership.user)
    services.api_token_revoke(token=already)
    untouched = ApiTokenFactory.create(user=membership.user)

    response = admin_site.post(
        admin_url(ApiToken, "changelist"), {"action": "revoke_tokens", "_selected_action": [live.pk, already.pk]}
    )

    assert response.status_code == 302
    live.refresh_from_db()
    untouched.refresh_from_db()
    assert live.revoked_at is not None
    assert untouched.revoked_at is None
    assert services.api_token_authenticate(raw=live.raw) is None
    revocations = AuditEvent.objects.filter(action="token.revoked", actor=operator)
    assert [event.target_id for event in revocations] == [str(live.pk)]  # the already revoked one is not again


# --- The audit log ---------------------------------------------------------------------------------------


def test_audit_events_cannot_be_added_changed_or_deleted(admin_site: Client, admin_membership: Membership) -> None:
    event = AuditEvent.objects.filter(action="membership.created").first()
    assert event is not None

    add = admin_site.get(admin_url(AuditEvent, "add"))
    change = admin_site.post(admin_url(AuditEvent, "change", event.pk), {"action": "nothing.happened"})
    delete = admin_site.post(admin_url(AuditEvent, "delete", event.pk), {"post": "yes"})
    bulk = admin_site.post(
        admin_url(AuditEvent, "changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.status_code in (200, 302)
    event.refresh_from_db()
    assert event.action == "membership.created"
    listing = admin_site.get(admin_url(AuditEvent, "changelist"))
    assert "delete_selected" not in listing.content.decode()


def test_the_audit_log_filters_by_action_and_tenant_and_searches_actors_and_targets(
    admin_site: Client, admin_membership: Membership
) -> None:
    token = ApiTokenFactory.create(user=admin_membership.user)
    other_tenant = TenantFactory.create()

    by_action = admin_site.get(admin_url(AuditEvent, "changelist"), {"action": "token.created"})
    by_tenant = admin_site.get(admin_url(AuditEvent, "changelist"), {"tenant__id__exact": str(other_tenant.pk)})
    by_target = admin_site.get(admin_url(AuditEvent, "changelist"), {"q": str(token.pk)})

    assert {e.action for e in by_action.context["cl"].result_list} == {"token.created"}
    assert {e.tenant_id for e in by_tenant.context["cl"].result_list} == {other_tenant.pk}
    assert [e.target_id for e in by_target.context["cl"].result_list] == [str(token.pk)]
