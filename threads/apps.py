from __future__ import annotations

from django.apps import AppConfig


class ThreadsConfig(AppConfig):
    name = "threads"
    verbose_name = "Threads, messages and the event log"
    default_auto_field = "django.db.models.BigAutoField"
