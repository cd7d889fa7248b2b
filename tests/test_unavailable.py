"""A dependency that is unavailable is answered 503 with Retry-After and a problem naming it, never 500.

The server cases run daphne for real: on PostgreSQL with a pool of one connection whose only connection a test
holds up with a table lock, and with Redis pointing at a port nothing listens on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis.exceptions
from django import db
from kombu.exceptions import OperationalError as BrokerError

from aihub.unavailable import unavailable_dependency
from tests.servers import (
    REPO,
    Stream,
    base_env,
    http_json,
    postgres_database,
    seed_demo_token,
    start_daphne,
    stop_server,
)


def get(url: str, token: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def assert_unavailable(answer: tuple[int, dict[str, str], dict[str, Any]], dependency: str) -> None:
    status, headers, body = answer
    assert status == 503, body
    assert headers["Content-Type"] == "application/problem+json"
    assert int(headers["Retry-After"]) >= 1
    assert body["dependency"] == dependency
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (db.OperationalError("couldn't get a connection after 3.00 sec"), "database"),
        (db.OperationalError("FATAL: sorry, too many clients already"), "database"),
        (db.OperationalError("database is locked"), "database"),
        (db.InterfaceError("connection already closed"), "database"),
        (redis.exceptions.ConnectionError("Connection refused"), "redis"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "redis"),
        (BrokerError("[Errno 111] Connection refused"), "broker"),
    ],
)
def test_errors_of_reaching_a_dependency_name_it(error: Exception, dependency: str) -> None:
    assert unavailable_dependency(error) == dependency


@pytest.mark.parametrize(
    "error",
    [db.IntegrityError("duplicate key"), db.ProgrammingError("syntax error"), db.DataError("bad"), ValueError("x")],
)
def test_errors_of_the_request_or_the_code_are_no_outage(error: Exception) -> None:
    assert unavailable_dependency(error) is None


@pytest.fixture(scope="module")
def one_connection_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """daphne on a fresh PostgreSQL database with a pool of one connection that waits half a second; the
    server's address, a token of the demo tenant, and the database's URL."""
    with postgres_database() as database_url:
        env = base_env(tmp_path_factory) | {
            "DATABASE_URL": database_url,
            "DATABASE_POOL_MIN_SIZE": "1",
            "DATABASE_POOL_MAX_SIZE": "1",
            "DATABASE_POOL_TIMEOUT_SECONDS": "0.5",
            "AIHUB_SSE_KEEPALIVE_SECONDS": "1",
        }
        server, base = start_daphne(env)
        try:
            yield base, seed_demo_token(env), database_url
        finally:
            stop_server(server)


SERVICES_SUITE = os.environ.get("DATABASE_URL", "").startswith("postgres")


@contextmanager
def held_up_reads(database_url: str, url: str, token: str, *, table: str) -> Iterator[None]:
    """While inside: ``table`` is locked, and a request reading it holds the pool's only connection waiting."""
    with psycopg.connect(database_url) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        held: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        holder = threading.Thread(target=lambda: held.append(get(url, token)))
        holder.start()
        with psycopg.connect(database_url, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            while not watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the request never reached the locked table"
                time.sleep(0.05)
        yield
        locker.rollback()
    holder.join(timeout=30)
    assert held[0][0] == 200, "the request that held the connection finishes once the lock is gone"


@pytest.mark.services
@pytest.mark.skipif(not SERVICES_SUITE, reason="runs once, in the services suite (it needs PostgreSQL)")
def test_a_request_that_finds_the_pool_empty_gets_503_and_the_server_recovers(
    one_connection_server: tuple[str, str, str],
) -> None:
    base, token, database_url = one_connection_server
    threads_url = f"{base}/api/v1/demo/threads/"
    assert get(threads_url, token)[0] == 200

    # Whoever reads threads now waits for the lock, holding the pool's only connection while it waits.
    with held_up_reads(database_url, threads_url, token, table="threads_thread"):
        assert_unavailable(get(threads_url, token), "database")
        with psycopg.connect(database_url, autocommit=True) as watcher:
            server_connections = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]  # type: ignore[index]

    # The server's one connection and the test's own locker: the pool never opened a second one.
    assert server_connections == 2
    assert get(threads_url, token)[0] == 200


@pytest.mark.services
@pytest.mark.skipif(not SERVICES_SUITE, reason="runs once, in the services suite (it needs PostgreSQL)")
def test_a_stream_whose_reads_find_the_pool_empty_stays_open_and_delivers_what_comes_after(
    one_connection_server: tuple[str, str, str],
) -> None:
    base, token, database_url = one_connection_server
    status, thread = http_json(f"{base}/api/v1/demo/threads/", body={"title": "Before"}, token=token)
    assert status == 201, thread
    stream = Stream(base, f"/api/v1/demo/threads/{thread['id']}/stream", token=token)
    try:
        frames = stream.frames()
        assert any(frame.get("event") == "stream.mode" for frame in frames)
        # Longer than the stream's quiet spell (STREAM_POLL_SECONDS, 5 s): its re-check of the log meets the empty
        # pool (0.5 s), and used to end the response there, mid-stream.
        with held_up_reads(
            database_url, f"{base}/api/v1/demo/threads/{thread['id']}/events/", token, table="threads_event"
        ):
            time.sleep(6.5)
        patch = urllib.request.Request(
            f"{base}/api/v1/demo/threads/{thread['id']}/",
            data=json.dumps({"title": "After"}).encode(),
            method="PATCH",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(patch, timeout=30) as answer:
            assert answer.status == 200
        updated = next(frame for frame in frames if "id" in frame)
    finally:
        stream.close()

    assert updated["event"] == "thread.updated"
    assert json.loads(updated["data"])["data"]["title"] == "After"


@pytest.mark.skipif(SERVICES_SUITE, reason="runs once, in the embedded suite (it needs no service)")
def test_redis_down_gets_503_naming_redis(tmp_path_factory: pytest.TempPathFactory, closed_port: int) -> None:
    env = base_env(tmp_path_factory)
    # The token is made while the cache is the embedded one; the server then runs with a Redis that is not there.
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True)
    token = seed_demo_token(env)
    server, base = start_daphne(
        env | {"REDIS_URL": f"redis://127.0.0.1:{closed_port}/0", "CELERY_BROKER_URL": "memory://"}
    )
    try:
        assert_unavailable(get(f"{base}/api/v1/demo/threads/", token), "redis")
    finally:
        stop_server(server)
