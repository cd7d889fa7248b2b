"""The caller in one tenant, and the one permission check every view, consumer and selector uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from aihub.access.cache import remembered
from aihub.access.models import ApiToken, Membership, Tenant
from aihub.access.rules import Level, granted_ids, is_granted, permission

if TYPE_CHECKING:
    from django.contrib.auth.models import User

ACTIVE_TENANT = "active"

# OAuth2 scopes; other credentials (API tokens, sessions, SSO JWTs) are bounded by roles alone.
READ_SCOPE = "read"
WRITE_SCOPE = "write"


def credential_scopes(auth: Any) -> frozenset[str] | None:
    """The OAuth2 scopes a credential carries, or None when it is not scope-limited."""
    scope = getattr(auth, "scope", None)
    if isinstance(scope, str) and not isinstance(auth, ApiToken):
        return frozenset(scope.split())
    return None


def credential_tenant_id(auth: Any) -> Any:
    """The tenant an API token is restricted to, if any."""
    return auth.tenant_id if isinstance(auth, ApiToken) else None


@dataclass(frozen=True)
class Principal:
    user: User
    tenant: Tenant
    membership: Membership
    rules: tuple[str, ...]
    ceiling: tuple[str, ...]
    scopes: frozenset[str] | None = None

    def can(self, level: Level | str, resource: str, *ids: str) -> bool:
        if Level(level) == Level.ADMIN and self.scopes is not None and WRITE_SCOPE not in self.scopes:
            return False
        return is_granted(permission(level, resource, *ids), rules=self.rules, ceiling=self.ceiling)

    def require(self, level: Level | str, resource: str, *ids: str) -> None:
        """Raise Http404 when the caller may not see the resource, PermissionDenied when it may only see it."""
        if not self.can(Level.USER, resource, *ids):
            raise Http404(f"No such {resource} in tenant {self.tenant.slug}.")
        if Level(level) == Level.ADMIN and not self.can(Level.ADMIN, resource, *ids):
            raise PermissionDenied(f"Your roles do not allow changing {resource} in tenant {self.tenant.slug}.")

    def visible(self, queryset: QuerySet[Any], resource: str, *, id_field: str = "pk") -> QuerySet[Any]:
        """Narrow ``queryset`` (already in this tenant) to the rows whose ids the caller may see."""
        ids = granted_ids(Level.USER, resource, rules=self.rules, ceiling=self.ceiling)
        if ids is None:
            return queryset
        return queryset.filter(**{f"{id_field}__in": ids})


def principal_for(*, user: User, tenant_ref: str, auth: Any = None) -> Principal:
    """Resolve ``tenant_ref`` (a slug or ``active``) for this caller, or raise.

    Unknown tenants and tenants the user does not belong to are the same 404; a token restricted to another
    tenant is a 403, since its user can see that tenant.
    """
    restricted_to = credential_tenant_id(auth)
    membership, rules = remembered(
        ("principal", user.pk, tenant_ref, restricted_to),
        lambda: _membership_and_rules(user=user, tenant_ref=tenant_ref, restricted_to=restricted_to),
    )
    return Principal(
        user=user,
        tenant=membership.tenant,
        membership=membership,
        rules=rules,
        ceiling=tuple(membership.tenant.rule_ceiling or ()),
        scopes=credential_scopes(auth),
    )


def _membership_and_rules(*, user: User, tenant_ref: str, restricted_to: Any) -> tuple[Membership, tuple[str, ...]]:
    memberships = Membership.objects.select_related("tenant").filter(user=user, tenant__is_active=True)
    if tenant_ref == ACTIVE_TENANT:
        if restricted_to is not None:
            membership = memberships.filter(tenant_id=restricted_to).first()
        else:
            membership = memberships.order_by("-is_default", "created_at").first()
        if membership is None:
            raise Http404("You are not a member of any tenant.")
    else:
        membership = memberships.filter(tenant__slug=tenant_ref).first()
        if membership is None:
            raise Http404(f"No tenant {tenant_ref!r}.")
    if restricted_to is not None and membership.tenant_id != restricted_to:
        raise PermissionDenied("This API token is restricted to another tenant.")
    return membership, tuple(dict.fromkeys(rule for role in membership.roles.all() for rule in role.rules))
