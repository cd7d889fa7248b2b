"""Reads of access data, as querysets with their joins, already narrowed to what the caller may see."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet

from aihub.access.models import ApiToken, AuditEvent, Membership, Role, Tenant
from aihub.access.rules import Level
from aihub.api.query import in_time_range

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from aihub.access.principal import Principal

AUDIT_RESOURCE = "audit"
"""The permission rule's resource: ``aihub.admin.audit`` reads the tenant's audit log (the ``admin`` role has it;
``member``'s ``aihub.user.>`` does not)."""


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


def audit_log(
    *,
    principal: Principal,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """The tenant's audit events, newest first, or PermissionDenied without ``aihub.admin.audit``.

    ``actor`` is a username as recorded, so events of a since deleted user are still found by it. Events of no
    tenant (a user created, a failed login) are in no tenant's log: the operators' admin shows them.
    """
    if not principal.can(Level.ADMIN, AUDIT_RESOURCE):
        raise PermissionDenied(f"Reading the audit log takes aihub.{Level.ADMIN}.{AUDIT_RESOURCE}.")
    events = AuditEvent.objects.filter(tenant=principal.tenant).order_by("-created_at", "-id")
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_label=actor)
    return in_time_range(events, "created_at", since=since, until=until)
