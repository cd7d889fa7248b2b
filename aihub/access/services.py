"""Every write to tenants, roles, memberships, tokens, identities and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from aihub.access.models import ApiToken, AuditEvent, ExternalIdentity, Membership, Role, Tenant
from aihub.access.rules import rules_cover, validate_rule
from aihub.conf import aihub_settings
from aihub.context import client_ip_var, request_id_var

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from aihub.access.principal import Principal

DEFAULT_ROLES: dict[str, tuple[str, list[str]]] = {
    "member": ("Sees and uses everything in the tenant", ["aihub.user.>"]),
    "admin": ("Creates, changes and deletes everything in the tenant", ["aihub.admin.>"]),
    "agent-user": (
        "Talks to agents: agents, threads and jobs only",
        ["aihub.user.agents.>", "aihub.user.threads.>", "aihub.user.jobs.>"],
    ),
    "knowledge-admin": (
        "Uses everything and manages knowledge collections",
        ["aihub.user.>", "aihub.admin.collections.>"],
    ),
    "viewer": (
        "Reads agents, threads, jobs and collections",
        ["aihub.user.agents.>", "aihub.user.threads.>", "aihub.user.jobs.>", "aihub.user.collections.>"],
    ),
}

# Tenant slugs share the first path segment under /api/v1/ with these routes.
RESERVED_TENANT_SLUGS = frozenset(
    {
        "active",
        "tenants",
        "tokens",
        "me",
        "health",
        "schema",
        "docs",
        "redoc",
        "admin",
        "api",
        "o",
        "openai",
        "mcp",
    }
)


# --- Audit -----------------------------------------------------------------------------------------------


def audit_record(
    *,
    action: str,
    actor: User | AnonymousUser | None = None,
    tenant: Tenant | None = None,
    target: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event; request id and client address come from the request context."""
    actor_user = actor if isinstance(actor, AbstractBaseUser) else None
    return AuditEvent.objects.create(
        action=action,
        actor=actor_user,
        actor_label=actor_user.get_username() if actor_user else "",
        tenant=tenant,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        ip_address=client_ip_var.get(),
        request_id=request_id_var.get(),
        details=details or {},
    )


# --- Users -----------------------------------------------------------------------------------------------


@transaction.atomic
def user_create(*, username: str, email: str = "", password: str | None = None, is_staff: bool = False) -> User:
    user_model = get_user_model()
    user = user_model(username=username, email=email, is_staff=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    audit_record(action="user.created", target=user, details={"username": username})
    return user


# --- Tenants and roles -----------------------------------------------------------------------------------


def _clean_rules(rules: Iterable[str], *, field: str = "rules") -> list[str]:
    if isinstance(rules, str) or not isinstance(rules, Iterable):
        raise ValidationError({field: "A list of rules is required."})
    cleaned = []
    for rule in rules:
        try:
            cleaned.append(validate_rule(rule))
        except ValueError as exc:
            raise ValidationError({field: str(exc)}) from exc
    return list(dict.fromkeys(cleaned))


def _check_grantable(rules: Sequence[str], granted_by: Principal | None) -> None:
    if granted_by is not None and not rules_cover(granted_by.rules, rules):
        raise PermissionDenied("You cannot grant rules that your own roles do not hold.")


@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str,
    rule_ceiling: Iterable[str] = (),
    owner: User | None = None,
    actor: User | None = None,
) -> Tenant:
    """Create a tenant with the default roles; ``owner`` becomes its first admin."""
    if slug in RESERVED_TENANT_SLUGS:
        raise ValidationError({"slug": f"{slug!r} is reserved."})
    tenant = Tenant(slug=slug, name=name, rule_ceiling=_clean_rules(rule_ceiling, field="rule_ceiling"))
    tenant.full_clean()
    tenant.save()
    for role_name, (description, rules) in DEFAULT_ROLES.items():
        Role.objects.create(tenant=tenant, name=role_name, description=description, rules=rules)
    audit_record(action="tenant.created", actor=actor, tenant=tenant, target=tenant, details={"slug": slug})
    if owner is not None:
        membership_create(tenant=tenant, user=owner, role_names=["admin"], actor=actor)
    return tenant


@transaction.atomic
def tenant_update(
    *,
    tenant: Tenant,
    name: str | None = None,
    rule_ceiling: Iterable[str] | None = None,
    is_active: bool | None = None,
    actor: User | None = None,
) -> Tenant:
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if rule_ceiling is not None:
        changes["rule_ceiling"] = _clean_rules(rule_ceiling, field="rule_ceiling")
    if is_active is not None:
        changes["is_active"] = is_active
    for field, value in changes.items():
        setattr(tenant, field, value)
    tenant.full_clean()
    tenant.save()
    audit_record(action="tenant.updated", actor=actor, tenant=tenant, target=tenant, details=changes)
    return tenant


@transaction.atomic
def role_create(
    *,
    tenant: Tenant,
    name: str,
    rules: Iterable[str],
    description: str = "",
    granted_by: Principal | None = None,
    actor: User | None = None,
) -> Role:
    cleaned = _clean_rules(rules)
    _check_grantable(cleaned, granted_by)
    role = Role(tenant=tenant, name=name, rules=cleaned, description=description)
    role.full_clean()
    role.save()
    audit_record(action="role.created", actor=actor, tenant=tenant, target=role, details={"rules": cleaned})
    return role


@transaction.atomic
def role_update(
    *,
    role: Role,
    rules: Iterable[str] | None = None,
    description: str | None = None,
    granted_by: Principal | None = None,
    actor: User | None = None,
) -> Role:
    details: dict[str, Any] = {}
    if rules is not None:
        cleaned = _clean_rules(rules)
        _check_grantable(cleaned, granted_by)
        details = {"rules_before": role.rules, "rules": cleaned}
        role.rules = cleaned
    if description is not None:
        role.description = description
    role.full_clean()
    role.save()
    audit_record(action="role.updated", actor=actor, tenant=role.tenant, target=role, details=details)
    return role


@transaction.atomic
def role_delete(*, role: Role, granted_by: Principal | None = None, actor: User | None = None) -> None:
    _check_grantable(role.rules, granted_by)
    audit_record(action="role.deleted", actor=actor, tenant=role.tenant, target=role, details={"name": role.name})
    role.delete()


# --- Memberships -----------------------------------------------------------------------------------------


def _roles_by_name(tenant: Tenant, role_names: Iterable[str]) -> list[Role]:
    names = list(dict.fromkeys(role_names))
    roles = list(Role.objects.filter(tenant=tenant, name__in=names))
    missing = sorted(set(names) - {role.name for role in roles})
    if missing:
        raise ValidationError({"roles": f"Unknown role(s) in tenant {tenant.slug}: {', '.join(missing)}."})
    return roles


def _check_roles_grantable(roles: Iterable[Role], granted_by: Principal | None) -> None:
    _check_grantable([rule for role in roles for rule in role.rules], granted_by)


@transaction.atomic
def membership_create(
    *,
    tenant: Tenant,
    user: User,
    role_names: Iterable[str],
    granted_by: Principal | None = None,
    actor: User | None = None,
) -> Membership:
    roles = _roles_by_name(tenant, role_names)
    _check_roles_grantable(roles, granted_by)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError({"user": f"{user.get_username()} is already a member of {tenant.slug}."})
    # The first tenant a user joins becomes the one `active` resolves to.
    is_default = not Membership.objects.filter(user=user, is_default=True).exists()
    membership = Membership.objects.create(tenant=tenant, user=user, is_default=is_default)
    membership.roles.set(roles)
    audit_record(
        action="membership.created",
        actor=actor,
        tenant=tenant,
        target=membership,
        details={"user": user.get_username(), "roles": sorted(r.name for r in roles)},
    )
    return membership


@transaction.atomic
def membership_set_roles(
    *,
    membership: Membership,
    role_names: Iterable[str],
    granted_by: Principal | None = None,
    actor: User | None = None,
) -> Membership:
    roles = _roles_by_name(membership.tenant, role_names)
    before = sorted(membership.roles.values_list("name", flat=True))
    # Both what is taken away and what is given must be within the grantor's own rules.
    _check_roles_grantable([*roles, *membership.roles.all()], granted_by)
    membership.roles.set(roles)
    after = sorted(r.name for r in roles)
    if before != after:
        audit_record(
            action="membership.roles_changed",
            actor=actor,
            tenant=membership.tenant,
            target=membership,
            details={"user": membership.user.get_username(), "roles_before": before, "roles": after},
        )
    return membership


@transaction.atomic
def membership_delete(
    *, membership: Membership, granted_by: Principal | None = None, actor: User | None = None
) -> None:
    _check_roles_grantable(membership.roles.all(), granted_by)
    audit_record(
        action="membership.deleted",
        actor=actor,
        tenant=membership.tenant,
        target=membership,
        details={"user": membership.user.get_username()},
    )
    was_default, user = membership.is_default, membership.user
    membership.delete()
    if was_default:
        successor = Membership.objects.filter(user=user).order_by("created_at").first()
        if successor is not None:
            Membership.objects.filter(pk=successor.pk).update(is_default=True)


@transaction.atomic
def membership_make_default(*, membership: Membership) -> Membership:
    # Clear first: the partial unique constraint allows one default per user at any moment.
    Membership.objects.filter(user=membership.user, is_default=True).exclude(pk=membership.pk).update(is_default=False)
    Membership.objects.filter(pk=membership.pk).update(is_default=True)
    membership.is_default = True
    return membership


# --- API tokens ------------------------------------------------------------------------------------------


def _hash_token(raw: str) -> str:
    # API tokens carry 256 bits of randomness, so a fast hash is enough; a slow one would only slow requests.
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user: User,
    name: str,
    tenant: Tenant | None = None,
    expires_at: datetime | None = None,
    actor: User | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored and cannot be shown again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if tenant is not None and not Membership.objects.filter(user=user, tenant=tenant).exists():
        raise ValidationError({"tenant": "The token's user is not a member of this tenant."})
    public_id = secrets.token_hex(6)
    raw = f"{ApiToken.PREFIX}{public_id}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        user=user,
        name=name,
        public_id=public_id,
        secret_hash=_hash_token(raw),
        tenant=tenant,
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    audit_record(
        action="token.created",
        actor=actor or user,
        tenant=tenant,
        target=token,
        details={"name": name, "user": user.get_username(), "prefix": token.display_prefix},
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: User | None = None) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            action="token.revoked",
            actor=actor,
            tenant=token.tenant,
            target=token,
            details={"name": token.name, "prefix": token.display_prefix},
        )
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The usable token this raw bearer value stands for, or None; records when it was last used."""
    if not raw.startswith(ApiToken.PREFIX):
        return None
    public_id, _, _secret = raw[len(ApiToken.PREFIX) :].partition("_")
    token = ApiToken.objects.select_related("user", "tenant").filter(public_id=public_id).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash_token(raw)):
        return None
    now = timezone.now()
    if not token.is_usable(now=now) or not token.user.is_active:
        return None
    resolution = timedelta(seconds=aihub_settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is None or now - token.last_used_at >= resolution:
        # One write per token per resolution window, whatever the request rate.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# --- External identities (OpenID Connect) ----------------------------------------------------------------


@transaction.atomic
def external_identity_sync(
    *,
    issuer: str,
    subject: str,
    username: str,
    email: str = "",
    tenant_roles: dict[str, list[str]] | None = None,
) -> User:
    """Find or create the user of an external identity and, when the issuer maps roles, apply them.

    ``tenant_roles`` maps tenant slugs to role names; memberships of tenants it names are set to exactly those
    roles (unknown tenants and roles are ignored, since the issuer may know more than this hub).
    """
    user_model = get_user_model()
    identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is None:
        # Never link to an existing local account by name: that would let an issuer take it over.
        if user_model.objects.filter(username=username).exists():
            username = f"{username}-{secrets.token_hex(3)}"
        user = user_create(username=username, email=email)
        identity = ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        audit_record(action="identity.linked", target=identity, details={"issuer": issuer, "subject": subject})
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    user = identity.user
    for slug, role_names in (tenant_roles or {}).items():
        tenant = Tenant.objects.filter(slug=slug, is_active=True).first()
        if tenant is None:
            continue
        known = [r.name for r in Role.objects.filter(tenant=tenant, name__in=role_names)]
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None:
            membership_create(tenant=tenant, user=user, role_names=known)
        elif sorted(membership.roles.values_list("name", flat=True)) != sorted(known):
            membership_set_roles(membership=membership, role_names=known)
    return user
