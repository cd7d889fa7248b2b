"""Outside dependencies that can be briefly unavailable, recognised by the exception that says so.

A request that meets one is answered 503 with ``Retry-After`` (never 500): the database (the pool found empty
for its timeout, too many clients, the server gone, SQLite locked beyond its timeout), Redis (the cache and the
channel layer) or the Celery broker. The client may simply retry; nothing half-done was kept, since the request's
transaction rolled back.
"""

from __future__ import annotations

import logging

import redis.exceptions
from django import db
from kombu.exceptions import OperationalError as BrokerError

from aihub.conf import aihub_settings

logger = logging.getLogger(__name__)

DEPENDENCY_NAMES = {"database": "the database", "redis": "Redis", "broker": "the task broker"}


def unavailable_dependency(exc: BaseException) -> str | None:
    """``"database"``, ``"redis"`` or ``"broker"`` when ``exc`` says that dependency is unavailable, else None.

    Only the errors of reaching a dependency count: a query the database refuses for what it asks (a
    ProgrammingError, an IntegrityError, a DataError) is the request's fault or a bug, not an outage.
    """
    if isinstance(exc, db.OperationalError | db.InterfaceError):
        return "database"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    if isinstance(exc, BrokerError):
        return "broker"
    return None


def retry_after_seconds() -> int:
    return int(aihub_settings.UNAVAILABLE_RETRY_AFTER_SECONDS)


def unavailable_detail(dependency: str) -> str:
    return (
        f"{DEPENDENCY_NAMES[dependency][0].upper()}{DEPENDENCY_NAMES[dependency][1:]} is unavailable or "
        f"overloaded; retry in {retry_after_seconds()} seconds."
    )


def log_unavailable(dependency: str, exc: BaseException, where: str) -> None:
    # One line, no traceback: an outage makes thousands of these, and the cause is in the message.
    logger.warning("%s unavailable at %s: %s: %s", dependency, where, type(exc).__name__, exc)
