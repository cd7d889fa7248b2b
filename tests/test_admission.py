"""Past the pending-request limit a server answers 503 at once, and takes requests again once answers go out."""

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
from typing import Any

import pytest

from tests.servers import REPO, Stream, base_env, http_json, seed_demo_token, start_daphne, stop_server

pytestmark = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="runs once, in the embedded suite (the limit is the server process's, whatever its database)",
)

LIMIT = 2
SLOW_MESSAGE = " ".join(f"w{n}" for n in range(80))  # the demo echo agent pauses 50 ms a word: about 4 s


def get(url: str, token: str = "") -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, lowercase(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, lowercase(error.headers), json.loads(error.read())


def lowercase(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The embedded server with room for two unanswered requests, seeded with the demo agents."""
    env = base_env(tmp_path_factory) | {"AIHUB_MAX_PENDING_REQUESTS": str(LIMIT)}
    server, base = start_daphne(env)
    token = seed_demo_token(env)
    subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
    yield base, token
    stop_server(server)


def new_thread(base: str, token: str) -> str:
    status, thread = http_json(f"{base}/api/v1/demo/threads/", body={"title": ""}, token=token)
    assert status == 201, thread
    return str(thread["id"])


def test_requests_beyond_the_limit_get_503_at_once_and_are_taken_again_after(limited_server: tuple[str, str]) -> None:
    base, token = limited_server
    threads = [new_thread(base, token) for _ in range(LIMIT)]
    answers: list[tuple[int, dict[str, Any]]] = []
    waiters = [
        threading.Thread(
            target=lambda thread=thread: answers.append(
                http_json(
                    f"{base}/api/v1/demo/threads/{thread}/messages/?wait=true",
                    body={"content": SLOW_MESSAGE, "agent": "echo"},
                    token=token,
                )
            )
        )
        for thread in threads
    ]
    for waiter in waiters:
        waiter.start()

    # Both have arrived by then (probing earlier, a probe could take the second place and refuse a waiter), and
    # stay unanswered for about 3 s more.
    time.sleep(1.0)
    started = time.monotonic()
    refused = get(f"{base}/api/v1/demo/threads/", token)
    took = time.monotonic() - started
    health = get(f"{base}/api/v1/health")
    for waiter in waiters:
        waiter.join(timeout=30)

    status, headers, body = refused
    assert status == 503, body
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["retry-after"]) >= 1
    assert headers["x-request-id"]
    assert body["type"].endswith("overloaded") and body["status"] == 503
    assert took < 0.5
    assert health[0] == 200, "the health route is never refused"
    assert sorted(status for status, _ in answers) == [200, 200]
    assert all(job["status"] == "succeeded" for _, job in answers)
    assert get(f"{base}/api/v1/demo/threads/", token)[0] == 200


def test_an_open_event_stream_holds_no_place(limited_server: tuple[str, str]) -> None:
    base, token = limited_server
    streams = [Stream(base, f"/api/v1/demo/threads/{new_thread(base, token)}/stream", token=token) for _ in range(3)]
    try:
        for stream in streams:
            assert stream.response.status == 200
            assert any(frame.get("event") == "stream.mode" for frame in stream.frames())

        assert get(f"{base}/api/v1/demo/threads/", token)[0] == 200
    finally:
        for stream in streams:
            stream.close()
