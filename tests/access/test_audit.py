"""The audit log: every security-relevant action leaves an event saying who, in which tenant, to what, in which
request; and no event ever holds a secret."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core import serializers
from django.core.management import call_command
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from aihub.access.models import ApiToken, AuditEvent, Membership, Role, Tenant
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ADMIN_REQUEST_ID, API_TOKEN_SECRET, admin_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant() -> Tenant:
    return TenantFactory.create(slug="acme")


def the_event(action: str) -> AuditEvent:
    """The one event of this action (the test made exactly one)."""
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, [e.action for e in AuditEvent.objects.all()]
    return events[0]


def assert_recorded(event: AuditEvent, *, actor: User, tenant: Tenant | None, target: Model) -> None:
    assert event.actor == actor
    assert event.actor_label == actor.get_username()
    assert event.tenant == tenant
    assert (event.target_type, event.target_id) == (target._meta.model_name, str(target.pk))
    assert event.request_id == ADMIN_REQUEST_ID
    assert event.ip_address == "127.0.0.1"


# --- Tokens ----------------------------------------------------------------------------------------------


def test_creating_a_token_records_who_for_whom_and_in_which_request(
    admin_site: Client, operator: User, tenant: Tenant
) -> None:
    member = MembershipFactory.create(tenant=tenant)

    admin_site.post(admin_url(ApiToken, "add"), {"user": member.user.pk, "name": "ci", "tenant": tenant.pk})

    token = ApiToken.objects.get(name="ci")
    event = the_event("token.created")
    assert_recorded(event, actor=operator, tenant=tenant, target=token)
    assert event.details["user"] == member.user.get_username()
    assert event.details["prefix"] == token.display_prefix


def test_revoking_a_token_records_who_revoked_it(admin_site: Client, operator: User, tenant: Tenant) -> None:
    member = MembershipFactory.create(tenant=tenant)
    token = ApiTokenFactory.create(user=member.user, tenant=tenant)

    admin_site.post(admin_url(ApiToken, "changelist"), {"action": "revoke_tokens", "_selected_action": [token.pk]})

    assert_recorded(the_event("token.revoked"), actor=operator, tenant=tenant, target=token)


# --- Roles -----------------------------------------------------------------------------------------------


def test_creating_a_role_records_its_rules(admin_site: Client, operator: User, tenant: Tenant) -> None:
    admin_site.post(
        admin_url(Role, "add"),
        {"tenant": tenant.pk, "name": "bots", "description": "", "rules": "aihub.user.agents.bot"},
    )

    event = the_event("role.created")
    assert_recorded(event, actor=operator, tenant=tenant, target=tenant.roles.get(name="bots"))
    assert event.details["rules"] == ["aihub.user.agents.bot"]


def test_changing_a_role_records_its_rules_before_and_after(admin_site: Client, operator: User, tenant: Tenant) -> None:
    role = tenant.roles.get(name="viewer")
    before = list(role.rules)

    admin_site.post(admin_url(Role, "change", role.pk), {"description": "Reads agents", "rules": "aihub.user.agents.>"})

    event = the_event("role.updated")
    assert_recorded(event, actor=operator, tenant=tenant, target=role)
    assert event.details == {"rules_before": before, "rules": ["aihub.user.agents.>"]}


def test_deleting_a_role_records_its_name(admin_site: Client, operator: User, tenant: Tenant) -> None:
    role = tenant.roles.get(name="viewer")

    admin_site.post(admin_url(Role, "delete", role.pk), {"post": "yes"})

    assert not Role.objects.filter(pk=role.pk).exists()
    event = the_event("role.deleted")
    assert_recorded(event, actor=operator, tenant=tenant, target=role)
    assert event.details["name"] == "viewer"


# --- Memberships -----------------------------------------------------------------------------------------


def test_creating_a_membership_records_the_user_and_roles(admin_site: Client, operator: User, tenant: Tenant) -> None:
    user = UserFactory.create(username="alice")

    admin_site.post(admin_url(Membership, "add"), {"user": user.pk, "tenant": tenant.pk, "role_names": ["viewer"]})

    event = the_event("membership.created")
    assert_recorded(event, actor=operator, tenant=tenant, target=Membership.objects.get(user=user))
    assert event.details == {"user": "alice", "roles": ["viewer"]}


def test_changing_a_memberships_roles_records_them_before_and_after(
    admin_site: Client, operator: User, tenant: Tenant
) -> None:
    membership = MembershipFactory.create(tenant=tenant, user=UserFactory.create(username="alice"), roles=["viewer"])

    admin_site.post(admin_url(Membership, "change", membership.pk), {"role_names": ["admin"]})

    event = the_event("membership.roles_changed")
    assert_recorded(event, actor=operator, tenant=tenant, target=membership)
    assert event.details == {"user": "alice", "roles_before": ["viewer"], "roles": ["admin"]}


def test_saving_a_membership_unchanged_records_no_role_change(admin_site: Client, tenant: Tenant) -> None:
    membership = MembershipFactory.create(tenant=tenant, roles=["viewer"])

    admin_site.post(admin_url(Membership, "change", membership.pk), {"role_names": ["viewer"]})

    assert not AuditEvent.objects.filter(action="membership.roles_changed").exists()


def test_deleting_a_membership_records_whose_it_was(admin_site: Client, operator: User, tenant: Tenant) -> None:
    membership = MembershipFactory.create(tenant=tenant, user=UserFactory.create(username="alice"))

    admin_site.post(admin_url(Membership, "delete", membership.pk), {"post": "yes"})

    assert not Membership.objects.filter(pk=membership.pk).exists()
    event = the_event("membership.deleted")
    assert_recorded(event, actor=operator, tenant=tenant, target=membership)
    assert event.details == {"user": "alice"}


# --- Logins ----------------------------------------------------------------------------------------------


def test_a_failed_admin_login_records_the_username_and_request_but_not_the_password() -> None:
    UserFactory.create(username="operator", is_staff=True)
    browser = Client(headers={"X-Request-ID": ADMIN_REQUEST_ID})

    response = browser.post(reverse("admin:login"), {"username": "operator", "password": "not-the-password-123"})

    assert response.status_code == 200  # the form again, with its error
    event = the_event("login.failed")
    assert event.details == {"username": "operator"}
    assert (event.actor, event.tenant, event.request_id, event.ip_address) == (
        None,
        None,
        ADMIN_REQUEST_ID,
        "127.0.0.1",
    )
    assert "not-the-password-123" not in json.dumps(event.details)


# --- No secrets ------------------------------------------------------------------------------------------


def test_no_audit_event_ever_holds_a_token_secret_or_a_password(
    admin_site: Client, tenant: Tenant, tmp_path: Path
) -> None:
    password = "a-password-nobody-should-read"
    password_file = tmp_path / "password"
    password_file.write_text(password)
    secrets: list[str] = []

    call_command("create_user", "alice", "--password-file", str(password_file), "--tenant", "acme", stdout=StringIO())
    call_command("create_user", "bob", "--password", password, stdout=StringIO())
    out = StringIO()
    call_command("create_token", "alice", "--name", "cli", "--tenant", "acme", stdout=out, stderr=StringIO())
    secrets.append(out.getvalue().strip())
    alice = Membership.objects.get(user__username="alice").user
    page = admin_site.post(admin_url(ApiToken, "add"), {"user": alice.pk, "name": "admin-made", "tenant": tenant.pk})
    secrets.extend(API_TOKEN_SECRET.findall(page.content.decode()))
    admin_site.post(
        admin_url(ApiToken, "changelist"),
        {"action": "revoke_tokens", "_selected_action": [t.pk for t in ApiToken.objects.all()]},
    )
    Client().post(reverse("admin:login"), {"username": "alice", "password": password + "-wrong"})

    assert len(secrets) == 2
    events = AuditEvent.objects.all()
    assert {"user.created", "token.created", "token.revoked", "login.failed"} <= {e.action for e in events}
    everything_recorded = serializers.serialize("json", events)
    for secret in secrets:
        assert secret not in everything_recorded
        assert secret.split("_", 2)[2] not in everything_recorded  # the secret part (it may contain "_")
    assert password not in everything_recorded
    for token in ApiToken.objects.all():
        assert token.secret_hash not in everything_recorded
