"""What the knowledge index's own SQL needs to know of the database it runs on."""

from __future__ import annotations

from typing import Any

from django.db import connection


def on_postgres() -> bool:
    return bool(connection.vendor == "postgresql")


def collection_key(collection_id: Any) -> Any:
    """A collection's id as a raw statement binds it: a UUID on PostgreSQL, its hex on SQLite (how Django stores it)."""
    return collection_id if on_postgres() else collection_id.hex
