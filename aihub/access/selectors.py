"""Reads of access data, as querysets with their joins, already narrowed to what the caller may see."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, QuerySet

from aihub.access.models import ApiToken, AuditEvent, Membership, Role, Tenant

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from aihub.access.principal import Principal


def active_user_by_username(*, username: str) -> User | None:
    return get_user_model().objects.filter(username=username, is_active=True).first()


def tenant_list(*, user: User) -> QuerySet[Tenant]:
    return Tenant.objects.filter(memberships__user=user, is_active=True).order_by("slug")


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user, tenant__is_active=True)
        .select_related("tenant")
        .prefetch_related(Prefetch("roles", queryset=Role.objects.order_by("name")))
        .order_by("-is_default", "created_at")
    )


def role_list(*, principal: Principal) -> QuerySet[Role]:
    principal.require("user", "roles")
    return Role.objects.filter(tenant=principal.tenant).order_by("name")


def membership_list(*, principal: Principal) -> QuerySet[Membership]:
    principal.require("user", "members")
    return (
        Membership.objects.filter(tenant=principal.tenant)
        .select_related("user", "tenant")
        .prefetch_related(Prefetch("roles", queryset=Role.objects.order_by("name")))
        .order_by("created_at")
    )


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).select_related("tenant").order_by("-created_at")


def audit_event_list(*, tenant: Tenant | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("actor", "tenant")
    return events.filter(tenant=tenant) if tenant is not None else events
