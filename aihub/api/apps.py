from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "aihub.api"
    label = "api"
    verbose_name = "API conventions"

    def ready(self) -> None:
        from aihub.api import schema  # noqa: F401  (registers the OpenAPI extensions)
