"""Short database calls from async code: run in the request's thread, the connection given back afterwards.

Under ASGI a request that waits (for a job, on a stream) must hold neither a thread nor a database connection
while it waits, so its ORM work is cut into short calls. Each runs through ``sync_to_async`` (thread-sensitive:
inside a request that is the request's own thread, and in tests the test's thread and transaction), and on a
database server the connection goes back to the pool (``connection.close()`` with Django's pool) as soon as
the call returns. SQLite connections are only file handles, opened once per request thread and closed with the
request as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")


def in_memory_sqlite() -> bool:
    """Whether the database is an in-memory SQLite one (the embedded test suite's): its connections fail at once,
    instead of waiting, when they meet another thread's write, so work on it stays on the caller's thread."""
    return connection.vendor == "sqlite" and bool(connection.is_in_memory_db())  # type: ignore[attr-defined]


def release_connection() -> None:
    """Give this thread's connection back, unless a transaction holds it or it is SQLite's."""
    if connection.vendor != "sqlite" and not connection.in_atomic_block:
        connection.close()


def _released(fn: Callable[P, R]) -> Callable[P, R]:
    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            release_connection()

    return call


async def db_call(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``await db_call(fn, ...)``: ``fn(...)`` on the request's thread; its connection released after."""
    return await sync_to_async(_released(fn))(*args, **kwargs)
