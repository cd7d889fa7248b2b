"""What the access management commands share: finding users and tenants by name, and turning service errors
into one clear CommandError line (which makes ``manage.py`` exit with status 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError

from aihub.access.models import Tenant

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def error_text(exc: ValidationError) -> str:
    """``field: message`` pairs on one line, as an operator reading a terminal wants them."""
    if hasattr(exc, "error_dict"):
        parts = []
        for field, messages in exc.message_dict.items():
            text = " ".join(messages)
            parts.append(text if field == "__all__" else f"{field}: {text}")
        return "; ".join(parts)
    return " ".join(exc.messages)


@contextmanager
def service_errors() -> Iterator[None]:
    try:
        yield
    except ValidationError as exc:
        raise CommandError(error_text(exc)) from exc
    except PermissionDenied as exc:
        raise CommandError(str(exc) or "Permission denied.") from exc


def user_by_username(username: str) -> User:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user named {username!r}.")
    return user


def tenant_by_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"No tenant with the slug {slug!r}.")
    return tenant


def read_password_file(path: str) -> str:
    try:
        # Only the line ending goes: spaces may be part of a password.
        password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise CommandError(f"Cannot read the password file {path}: {exc.strerror}.") from exc
    if not password:
        raise CommandError(f"The password file {path} is empty.")
    return password
