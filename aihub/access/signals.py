"""Failed logins (admin and browser pages) go to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from aihub.access.services import audit_record


@receiver(user_login_failed)
def record_failed_login(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # `credentials` has the password scrubbed by Django; keep only the username.
    audit_record(action="login.failed", details={"username": str(credentials.get("username", ""))[:150]})
