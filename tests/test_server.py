"""The real ASGI server (daphne), embedded and scaled out: it answers, and readiness sees every dependency."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import DEFAULT_REDIS_URL, require_service

REPO = Path(__file__).resolve().parent.parent
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, *, body: dict[str, Any] | None = None, token: str = "") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _start_daphne(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True, timeout=180
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "aihub.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(f"{base}/api/v1/health")
            return server, base
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                output = server.stdout.read().decode() if server.stdout else ""
                pytest.fail(f"daphne did not start:\n{output}")
            time.sleep(0.2)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


def _base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES and k != "DJANGO_SETTINGS_MODULE"}
    env["AIHUB_VAR_DIR"] = str(tmp_path_factory.mktemp("var"))
    return env


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The server as `make run` starts it, seeded with the demo tenant, agents and an API token."""
    env = _base_env(tmp_path_factory)
    server, base = _start_daphne(env)
    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--token"], cwd=REPO, env=env, check=True, capture_output=True
    )
    subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
    token = re.search(r"aih_\S+", seeded.stdout.decode())
    assert token is not None, seeded.stdout
    yield base, token.group(0)
    _stop(server)


@pytest.fixture(scope="module")
def scaled_out_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """daphne on PostgreSQL, channels-redis and a Redis broker, in a database of its own."""
    postgres_url = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aihub")
    server_root = postgres_url.rsplit("/", 1)[0]
    require_service("PostgreSQL", postgres_url)
    redis = require_service("Redis", os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL))
    database = f"aihub_server_test_{os.getpid()}"
    with psycopg.connect(f"{server_root}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    env = _base_env(tmp_path_factory) | {
        "DATABASE_URL": f"{server_root}/{database}",
        "REDIS_URL": redis,
        "CELERY_BROKER_URL": redis,
    }
    server, base = _start_daphne(env)
    yield base
    _stop(server)
    with psycopg.connect(f"{server_root}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_the_embedded_server_answers_liveness(embedded_server: tuple[str, str]) -> None:
    base, _token = embedded_server
    assert _get(f"{base}/api/v1/health") == (200, {"status": "ok"})


def test_the_embedded_server_is_ready_with_its_in_process_worker(embedded_server: tuple[str, str]) -> None:
    base, _token = embedded_server
    status, body = _get(f"{base}/api/v1/health/ready")

    assert status == 200, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert set(checks) == {"database", "channel_layer", "broker", "worker"}
    assert all(check["ok"] for check in checks.values())


def test_the_embedded_server_answers_unknown_api_routes_with_problem_details(embedded_server: tuple[str, str]) -> None:
    base, _token = embedded_server
    status, body = _get(f"{base}/api/v1/no/such/route")

    assert status == 404
    assert body["type"] == "urn:aihub:problem:not-found"
    assert body["instance"] == "/api/v1/no/such/route"


def test_the_scaled_out_server_is_ready_on_postgresql_and_redis(scaled_out_server: str) -> None:
    status, body = _get(f"{scaled_out_server}/api/v1/health/ready")

    assert status == 200, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    # No in-process worker: separate `celery worker` processes do the work when a broker is configured.
    assert set(checks) == {"database", "channel_layer", "broker"}
    assert all(check["ok"] for check in checks.values())


def test_the_embedded_server_runs_a_demo_agent_job_on_its_in_process_worker(embedded_server: tuple[str, str]) -> None:
    base, token = embedded_server

    status, job = _get(
        f"{base}/api/v1/demo/agents/calculator/messages?wait=true&timeout=15",
        body={"content": "calculate 2 * (3 + 4)"},
        token=token,
    )

    assert status == 200, job
    assert job["status"] == "succeeded"
    assert job["output"]["content"] == [{"type": "text", "text": "The result is 14."}]
    status, events = _get(f"{base}/api/v1/demo/threads/{job['thread']}/events/", token=token)
    assert status == 200
    sequence = [event["id"] for event in events["items"]]
    assert sequence == list(range(1, len(sequence) + 1))
    types = [event["type"] for event in events["items"]]
    assert types[:3] == ["message.created", "job.queued", "job.started"]
    assert {"tool.started", "tool.completed"} <= set(types)
    assert types[-1] == "job.succeeded"
