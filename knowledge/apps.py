from __future__ import annotations

from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge: collections, documents and search"
    default_auto_field = "django.db.models.BigAutoField"
