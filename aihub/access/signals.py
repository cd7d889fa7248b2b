"""Failed logins (admin and browser pages) go to the audit log; changes of access empty the access cache."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from aihub.access.cache import access_changed
from aihub.access.models import ApiToken, Membership, Role, Tenant
from aihub.access.services import audit_record


@receiver(user_login_failed)
def record_failed_login(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # `credentials` has the password scrubbed by Django; keep only the username.
    audit_record(action="login.failed", details={"username": str(credentials.get("username", ""))[:150]})


def _forget_access(sender: Any, **kwargs: Any) -> None:
    access_changed()


# Everything a cached token or principal (aihub.access.cache) was read from: any write, by a service, the admin
# or a cascade, drops the cache in every process.
for model in (Tenant, Role, Membership, ApiToken, get_user_model()):
    post_save.connect(_forget_access, sender=model, dispatch_uid=f"access-cache-save-{model._meta.label}")
    post_delete.connect(_forget_access, sender=model, dispatch_uid=f"access-cache-delete-{model._meta.label}")
m2m_changed.connect(_forget_access, sender=Membership.roles.through, dispatch_uid="access-cache-membership-roles")
