from __future__ import annotations

from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "aihub.access"
    label = "access"
    verbose_name = "Access: tenants, roles, tokens"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from aihub.access import signals  # noqa: F401
