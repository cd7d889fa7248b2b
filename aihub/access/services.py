"""Every write to tenants, roles, memberships, tokens, identities and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Model, Q
from django.utils import timezone

from aihub.access.cache import access_changed, remember, remembered
from aihub.access.models import ApiToken, AuditEvent, ExternalIdentity, Membership, Role, Tenant
from aihub.access.rules import is_granted, permission, rules_cover, validate_rule
from aihub.conf import aihub_settings
from aihub.context import client_ip_var, request_id_var

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from aihub.access.principal import Principal

DEFAULT_ROLES: dict[str, tuple[str, list[str]]] = {
    "member": ("Sees and uses everything in the tenant", ["aihub.user.>"]),
    "admin": ("Creates, changes and deletes everything in the tenant", ["aihub.admin.>"]),
    "agent-user": (
        "Talks to agents: agents, threads, jobs and the model catalogue only",
        ["aihub.user.agents.>", "aihub.user.threads.>", "aihub.user.jobs.>", "aihub.user.models.>"],
    ),
    "knowledge-admin": (
        "Uses everything and manages knowledge collections",
        ["aihub.user.>", "aihub.admin.collections.>"],
    ),
    "viewer": (
        "Reads agents, threads, jobs, collections and the model catalogue",
        [
            "aihub.user.agents.>",
            "aihub.user.threads.>",
            "aihub.user.jobs.>",
            "aihub.user.collections.>",
            "aihub.user.models.>",
        ],
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
def user_create(
    *,
    username: str,
    email: str = "",
    password: str | None = None,
    is_staff: bool = False,
    is_superuser: bool = False,
    actor: User | None = None,
) -> User:
    """Create a user; without a password it gets an unusable one (token, SSO or a later reset only)."""
    user_model = get_user_model()
    user = user_model(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    details: dict[str, Any] = {"username": username}
    if is_staff or is_superuser:
        details.update(is_staff=is_staff, is_superuser=is_superuser)
    audit_record(action="user.created", actor=actor, target=user, details=details)
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


def _save_unique(instance: Model, *, still_clashes: Callable[[], bool], error: dict[str, str]) -> None:
    """Save ``instance``, turning a unique-constraint race lost to a concurrent writer into a ValidationError.

    full_clean already refuses the clashes it can see; this covers the one committed between that check and the
    INSERT. The savepoint keeps the outer transaction usable on PostgreSQL after the failed statement.
    """
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        if still_clashes():
            raise ValidationError(error) from None
        raise


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
    # Case-insensitively, so that no slug looks like a platform route to a human reading a URL.
    if slug.lower() in RESERVED_TENANT_SLUGS:
        raise ValidationError({"slug": f"{slug!r} is reserved."})
    tenant = Tenant(slug=slug, name=name, rule_ceiling=_clean_rules(rule_ceiling, field="rule_ceiling"))
    tenant.full_clean()
    _save_unique(
        tenant,
        still_clashes=lambda: Tenant.objects.filter(slug=slug).exists(),
        error={"slug": f"A tenant with the slug {slug!r} already exists."},
    )
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
def tenant_delete(*, tenant: Tenant, actor: User | None = None) -> None:
    """Delete a tenant and, by cascade, everything in it; its audit events stay, with the tenant cleared."""
    audit_record(
        action="tenant.deleted",
        actor=actor,
        tenant=tenant,
        target=tenant,
        details={"slug": tenant.slug, "name": tenant.name},
    )
    tenant.delete()


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
    name_taken = {"name": f"Tenant {tenant.slug} already has a role named {name!r}."}
    if Role.objects.filter(tenant=tenant, name=name).exists():
        # Before full_clean, whose message for the (tenant, name) constraint names no field.
        raise ValidationError(name_taken)
    role = Role(tenant=tenant, name=name, rules=cleaned, description=description)
    # Rules were checked above; a role without any (yet) is allowed, which the model's blank check would refuse.
    role.full_clean(exclude=["rules"])
    _save_unique(role, still_clashes=lambda: Role.objects.filter(tenant=tenant, name=name).exists(), error=name_taken)
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
        # Rewriting a role is granting its new rules and taking away its old ones: both must be within reach.
        _check_grantable([*cleaned, *role.rules], granted_by)
        details = {"rules_before": role.rules, "rules": cleaned}
        role.rules = cleaned
    if description is not None:
        role.description = description
    role.full_clean(exclude=["rules"])
    role.save()
    _ensure_tenant_keeps_a_manager(role.tenant, granted_by)
    audit_record(action="role.updated", actor=actor, tenant=role.tenant, target=role, details=details)
    return role


@transaction.atomic
def role_delete(*, role: Role, granted_by: Principal | None = None, actor: User | None = None) -> None:
    _check_grantable(role.rules, granted_by)
    audit_record(action="role.deleted", actor=actor, tenant=role.tenant, target=role, details={"name": role.name})
    tenant = role.tenant
    role.delete()
    _ensure_tenant_keeps_a_manager(tenant, granted_by)


def _ensure_tenant_keeps_a_manager(tenant: Tenant, granted_by: Principal | None) -> None:
    """Refuse an API change that would leave no active member able to manage members and roles.

    Operators (admin, commands: ``granted_by`` is None) may still do it, since they can always repair a tenant.
    """
    if granted_by is None:
        return
    memberships = Membership.objects.filter(tenant=tenant, user__is_active=True).prefetch_related("roles")
    ceiling = tenant.rule_ceiling or ()
    for membership in memberships:
        rules = [rule for role in membership.roles.all() for rule in role.rules]
        if all(is_granted(permission("admin", resource), rules=rules, ceiling=ceiling) for resource in _MANAGED):
            return
    raise ValidationError({"roles": "This would leave the tenant with no one who can manage its members and roles."})


_MANAGED = ("members", "roles")


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


def _lock_memberships_of(user: User) -> None:
    # Which membership is the default is decided per user; locking the user row makes concurrent joins, leaves
    # and switches take turns instead of both claiming (or both dropping) the default.
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


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
    already = {"user": f"{user.get_username()} is already a member of {tenant.slug}."}
    _lock_memberships_of(user)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError(already)
    # The first tenant a user joins becomes the one `active` resolves to.
    is_default = not Membership.objects.filter(user=user, is_default=True).exists()
    membership = Membership(tenant=tenant, user=user, is_default=is_default)
    _save_unique(
        membership,
        still_clashes=lambda: Membership.objects.filter(tenant=tenant, user=user).exists(),
        error=already,
    )
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
    _ensure_tenant_keeps_a_manager(membership.tenant, granted_by)
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
    user = membership.user
    _lock_memberships_of(user)
    # Read under the lock: the instance may predate a concurrent switch of the default.
    was_default = Membership.objects.filter(pk=membership.pk, is_default=True).exists()
    tenant = membership.tenant
    membership.delete()
    _ensure_tenant_keeps_a_manager(tenant, granted_by)
    if was_default:
        # The next-oldest membership takes over, preferring tenants that are still active.
        successor = Membership.objects.filter(user=user).order_by("-tenant__is_active", "created_at").first()
        if successor is not None:
            Membership.objects.filter(pk=successor.pk).update(is_default=True)
            access_changed()  # an update sends no signal, and the caller's default tenant just changed


@transaction.atomic
def membership_make_default(*, membership: Membership) -> Membership:
    _lock_memberships_of(membership.user)
    # Clear first: the partial unique constraint allows one default per user at any moment.
    Membership.objects.filter(user=membership.user, is_default=True).exclude(pk=membership.pk).update(is_default=False)
    Membership.objects.filter(pk=membership.pk).update(is_default=True)
    access_changed()  # updates send no signal, and the caller's default tenant just changed
    membership.is_default = True
    audit_record(
        action="membership.made_default",
        actor=membership.user,
        tenant=membership.tenant,
        target=membership,
        details={"user": membership.user.get_username()},
    )
    return membership


# --- API tokens ------------------------------------------------------------------------------------------


_PUBLIC_ID_BYTES = 6
_PUBLIC_ID = re.compile(rf"[0-9a-f]{{{2 * _PUBLIC_ID_BYTES}}}")


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
    public_id = secrets.token_hex(_PUBLIC_ID_BYTES)
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


@transaction.atomic
def api_token_delete(*, token: ApiToken, actor: User | None = None) -> None:
    """Remove a token's record; revoke instead to keep it. Deleting a live token also ends its use."""
    audit_record(
        action="token.deleted",
        actor=actor,
        tenant=token.tenant,
        target=token,
        details={"name": token.name, "prefix": token.display_prefix, "was_revoked": token.revoked_at is not None},
    )
    token.delete()


def api_token_public_id(raw: str) -> str | None:
    """The public id of a well-formed raw token: the only part of it that is safe to log."""
    if not raw.startswith(ApiToken.PREFIX):
        return None
    public_id, _, secret = raw[len(ApiToken.PREFIX) :].partition("_")
    return public_id if secret and _PUBLIC_ID.fullmatch(public_id) else None


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The usable token this raw bearer value stands for, or None; records when it was last used."""
    public_id = api_token_public_id(raw)
    if public_id is None:
        return None
    key = ("api-token", public_id)
    token = remembered(
        key, lambda: ApiToken.objects.select_related("user", "tenant").filter(public_id=public_id).first()
    )
    if token is None or not hmac.compare_digest(token.secret_hash, _hash_token(raw)):
        return None
    now = timezone.now()
    if not token.is_usable(now=now) or not token.user.is_active:
        return None
    if api_token_record_use(token=token, now=now):
        remember(key, token)  # so the next request knows the use is recorded for this window
    return token


def api_token_record_use(*, token: ApiToken, now: datetime) -> bool:
    """Record a use: one write per token per resolution window, whatever the request rate; True if it wrote
    (or tried to: another process may have recorded this window's use first)."""
    resolution = timedelta(seconds=aihub_settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is not None and now - token.last_used_at < resolution:
        return False
    # Conditional, so that concurrent requests (other processes) which all loaded a stale row write once.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - resolution)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
    return True


# --- External identities (OpenID Connect) ----------------------------------------------------------------


_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]+")
_USERNAME_MAX = 150


def _storable_username(wanted: str) -> str:
    """A username Django's validator accepts, as close to what the issuer sent as possible."""
    return _USERNAME_UNSAFE.sub("-", wanted).strip("-")[:_USERNAME_MAX] or "user"


def _storable_email(wanted: str) -> str:
    try:
        validate_email(wanted)
    except ValidationError:
        return ""
    return wanted


def _external_user_create(*, issuer: str, subject: str, username: str, email: str) -> ExternalIdentity:
    user_model = get_user_model()
    username = _storable_username(username)
    # Never link to an existing local account by name: that would let an issuer take it over.
    while user_model.objects.filter(username=username).exists():
        username = f"{username[: _USERNAME_MAX - 7]}-{secrets.token_hex(3)}"
    try:
        # A savepoint: a concurrent first login of the same subject may win the race for the identity.
        with transaction.atomic():
            user = user_create(username=username, email=_storable_email(email))
            identity = ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    except IntegrityError:
        winner = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if winner is None:  # the clash was something else, e.g. a username taken meanwhile
            raise
        return winner
    audit_record(action="identity.linked", target=identity, details={"issuer": issuer, "subject": subject})
    return identity


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
    roles (unknown tenants and roles are ignored, since the issuer may know more than this hub). A tenant
    named only with unknown roles gives no membership, so it is not even visible.
    """
    identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is None:
        identity = _external_user_create(issuer=issuer, subject=subject, username=username, email=email)
    now = timezone.now()
    resolution = timedelta(seconds=aihub_settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if identity.last_login_at is None or now - identity.last_login_at >= resolution:
        # Every API call carries the JWT; like token use, write the login time once per window.
        ExternalIdentity.objects.filter(pk=identity.pk).update(last_login_at=now)
        identity.last_login_at = now
    user = identity.user
    for slug, role_names in (tenant_roles or {}).items():
        tenant = Tenant.objects.filter(slug=slug, is_active=True).first()
        if tenant is None:
            continue
        known = [r.name for r in Role.objects.filter(tenant=tenant, name__in=role_names)]
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None:
            if known:
                membership_create(tenant=tenant, user=user, role_names=known)
        elif sorted(membership.roles.values_list("name", flat=True)) != sorted(known):
            membership_set_roles(membership=membership, role_names=known)
    return user


@transaction.atomic
def external_identity_delete(*, identity: ExternalIdentity, actor: User | None = None) -> None:
    """Unlink an external identity from its user; the issuer's next login for that subject makes a new user."""
    audit_record(
        action="identity.unlinked",
        actor=actor,
        target=identity,
        details={"issuer": identity.issuer, "subject": identity.subject, "user": identity.user.get_username()},
    )
    identity.delete()
