"""principal_for turns a tenant reference into the caller-in-a-tenant; Principal holds the one permission check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from aihub.access import services
from aihub.access.models import Membership, Role
from aihub.access.principal import Principal, principal_for
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def _member_with_rules(rules: list[str], *, ceiling: list[str] | None = None) -> Membership:
    tenant = TenantFactory.create(rule_ceiling=ceiling or [])
    services.role_create(tenant=tenant, name="custom", rules=rules)
    return MembershipFactory.create(tenant=tenant, roles=["custom"])


def _principal_of(membership: Membership, **kwargs: Any) -> Principal:
    """The principal of ``membership``'s user in its tenant."""
    return principal_for(user=membership.user, tenant_ref=membership.tenant.slug, **kwargs)


def _assert_refused(principal: Principal, level: str, resource: str, *ids: str) -> None:
    """The principal may see but not do this: ``can`` says no and ``require`` is a 403, not a 404."""
    assert not principal.can(level, resource, *ids)
    with pytest.raises(PermissionDenied):
        principal.require(level, resource, *ids)


def _oauth2_token(user: object, *, scope: str) -> AccessToken:
    application = Application.objects.create(
        name="frontend",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    return AccessToken.objects.create(
        user=user,
        application=application,
        token=f"oauth-{scope}-{application.pk}",
        scope=scope,
        expires=timezone.now() + timedelta(hours=1),
    )


# --- Resolving the tenant --------------------------------------------------------------------------------


def test_a_slug_resolves_to_the_callers_membership_with_its_rules(membership: Membership) -> None:
    principal = _principal_of(membership)

    assert principal.tenant == membership.tenant
    assert principal.membership == membership
    assert principal.rules == ("aihub.user.>",)
    assert principal.ceiling == ()


def test_active_resolves_to_the_first_tenant_the_user_joined() -> None:
    user = UserFactory.create()
    first = MembershipFactory.create(user=user)
    MembershipFactory.create(user=user)

    assert principal_for(user=user, tenant_ref="active").tenant == first.tenant


def test_making_another_membership_the_default_switches_what_active_means() -> None:
    user = UserFactory.create()
    first = MembershipFactory.create(user=user)
    second = MembershipFactory.create(user=user)

    services.membership_make_default(membership=second)

    assert principal_for(user=user, tenant_ref="active").tenant == second.tenant
    assert list(Membership.objects.filter(user=user, is_default=True)) == [second]
    first.refresh_from_db()
    assert first.is_default is False


def test_leaving_the_default_tenant_promotes_the_next_membership() -> None:
    user = UserFactory.create()
    first = MembershipFactory.create(user=user)
    second = MembershipFactory.create(user=user)
    MembershipFactory.create(user=user)

    services.membership_delete(membership=first)

    second.refresh_from_db()
    assert second.is_default is True
    assert principal_for(user=user, tenant_ref="active").tenant == second.tenant


def test_active_without_any_membership_is_not_found() -> None:
    with pytest.raises(Http404):
        principal_for(user=UserFactory.create(), tenant_ref="active")


def test_an_unknown_tenant_and_a_tenant_of_others_are_the_same_not_found(membership: Membership) -> None:
    someone_elses = TenantFactory.create()

    with pytest.raises(Http404) as unknown:
        principal_for(user=membership.user, tenant_ref="no-such-tenant")
    with pytest.raises(Http404) as not_mine:
        principal_for(user=membership.user, tenant_ref=someone_elses.slug)

    # Same wording apart from the slug the caller typed: nothing says the second one exists.
    assert str(unknown.value).replace("no-such-tenant", "X") == str(not_mine.value).replace(someone_elses.slug, "X")


def test_an_inactive_tenant_is_invisible_even_to_its_members(membership: Membership) -> None:
    services.tenant_update(tenant=membership.tenant, is_active=False)

    with pytest.raises(Http404):
        _principal_of(membership)
    with pytest.raises(Http404):
        principal_for(user=membership.user, tenant_ref="active")


def test_active_skips_an_inactive_default_tenant() -> None:
    user = UserFactory.create()
    first = MembershipFactory.create(user=user)
    second = MembershipFactory.create(user=user)
    services.tenant_update(tenant=first.tenant, is_active=False)

    assert principal_for(user=user, tenant_ref="active").tenant == second.tenant


def test_a_tenant_restricted_token_resolves_active_to_its_tenant_and_refuses_others() -> None:
    user = UserFactory.create()
    MembershipFactory.create(user=user)
    second = MembershipFactory.create(user=user)
    token = ApiTokenFactory.create(user=user, tenant=second.tenant)

    assert principal_for(user=user, tenant_ref="active", auth=token).tenant == second.tenant
    with pytest.raises(PermissionDenied):
        principal_for(user=user, tenant_ref=Membership.objects.get(user=user, is_default=True).tenant.slug, auth=token)


# --- The permission check --------------------------------------------------------------------------------


def test_require_is_not_found_when_the_caller_may_not_even_see() -> None:
    principal = _principal_of(_member_with_rules(["aihub.user.agents.>"]))

    with pytest.raises(Http404):
        principal.require("user", "roles")
    with pytest.raises(Http404):
        principal.require("admin", "roles")


def test_require_is_forbidden_when_the_caller_may_see_but_not_change(membership: Membership) -> None:
    principal = _principal_of(membership)

    principal.require("user", "roles")
    with pytest.raises(PermissionDenied):
        principal.require("admin", "roles")


def test_require_passes_an_admin(admin_membership: Membership) -> None:
    principal = _principal_of(admin_membership)

    principal.require("admin", "roles")
    principal.require("user", "agents", "support-bot")


def test_the_tenant_ceiling_caps_every_role() -> None:
    membership = _member_with_rules(["aihub.admin.>"], ceiling=["aihub.user.>", "aihub.admin.agents.>"])
    principal = _principal_of(membership)

    assert principal.ceiling == ("aihub.user.>", "aihub.admin.agents.>")
    assert principal.can("admin", "agents", "bot")
    assert principal.can("user", "roles")
    _assert_refused(principal, "admin", "roles")
    _assert_refused(principal, "admin", "members")


def test_a_read_only_oauth2_token_never_reaches_the_admin_level(admin_membership: Membership) -> None:
    token = _oauth2_token(admin_membership.user, scope="read")
    principal = _principal_of(admin_membership, auth=token)

    assert principal.scopes == frozenset({"read"})
    assert principal.can("user", "roles")
    _assert_refused(principal, "admin", "roles")


def test_a_read_write_oauth2_token_keeps_the_roles_admin_level(admin_membership: Membership) -> None:
    token = _oauth2_token(admin_membership.user, scope="read write")
    principal = _principal_of(admin_membership, auth=token)

    assert principal.can("admin", "roles")


# --- Narrowing querysets ---------------------------------------------------------------------------------


def _roles_of(principal: Principal) -> list[str]:
    queryset = Role.objects.filter(tenant=principal.tenant)
    return sorted(principal.visible(queryset, "roles", id_field="name").values_list("name", flat=True))


def test_visible_narrows_a_queryset_to_the_ids_the_rules_name() -> None:
    membership = _member_with_rules(["aihub.user.roles.viewer", "aihub.admin.roles.member"])
    principal = _principal_of(membership)

    assert _roles_of(principal) == ["member", "viewer"]


def test_visible_leaves_the_queryset_whole_under_a_wildcard() -> None:
    membership = _member_with_rules(["aihub.user.roles.*"])
    principal = _principal_of(membership)

    assert _roles_of(principal) == ["admin", "agent-user", "custom", "knowledge-admin", "member", "viewer"]


def test_visible_is_empty_without_any_rule_for_the_resource() -> None:
    membership = _member_with_rules(["aihub.user.agents.>"])
    principal = _principal_of(membership)

    assert _roles_of(principal) == []


def test_visible_respects_the_ceiling_too() -> None:
    membership = _member_with_rules(["aihub.user.>"], ceiling=["aihub.user.roles.viewer", "aihub.user.agents.>"])
    principal = _principal_of(membership)

    assert _roles_of(principal) == ["viewer"]
