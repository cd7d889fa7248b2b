"""The real ASGI server (daphne), embedded and scaled out: it answers, and readiness sees every dependency."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.servers import http_json


def test_the_embedded_server_answers_liveness(embedded_server: tuple[str, str]) -> None:
    base, _token = embedded_server
    assert http_json(f"{base}/api/v1/health") == (200, {"status": "ok"})


def test_the_embedded_server_is_ready_with_its_in_process_worker(embedded_server: tuple[str, str]) -> None:
    base, _token = embedded_server
    status, body = http_json(f"{base}/api/v1/health/ready")

    assert status == 200, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert set(checks) == {"database", "channel_layer", "broker", "worker"}
    assert all(check["ok"] for check in checks.values())


def test_the_embedded_server_answers_unknown_api_routes_with_problem_details(embedded_server: tuple[str, str]) -> None:
    base, _token = embedded_server
    status, body = http_json(f"{base}/api/v1/no/such/route")

    assert status == 404
    assert body["type"] == "urn:aihub:problem:not-found"
    assert body["instance"] == "/api/v1/no/such/route"


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("threads/", "multipart/form-data", b'{"title": "JSON under a multipart type"}'),
        ("files/", "multipart/form-data; boundary=xyz", b"no parts at all"),
        ("agents/calculator/tools/calculator", "multipart/form-data; boundary=xyz", b"--xyz\r\nhalf a part"),
    ],
    ids=["json-as-multipart", "no-parts", "half-a-part"],
)
def test_the_embedded_server_answers_a_malformed_multipart_body_with_a_problem(
    embedded_server: tuple[str, str], path: str, content_type: str, body: bytes
) -> None:
    base, token = embedded_server
    request = urllib.request.Request(f"{base}/api/v1/demo/{path}", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("X-Request-ID", "malformed-multipart-1")

    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=20)

    # Twisted's own form parsing used to answer these with a bare 400: no body, no headers at all.
    assert answer.value.code == 400
    assert answer.value.headers["Content-Type"] == "application/problem+json"
    assert answer.value.headers["X-Request-ID"] == "malformed-multipart-1"
    problem = json.loads(answer.value.read())
    assert problem["status"] == 400
    assert problem["correlation_id"] == "malformed-multipart-1"


def test_the_scaled_out_server_is_ready_on_postgresql_and_redis(scaled_out_server: str) -> None:
    status, body = http_json(f"{scaled_out_server}/api/v1/health/ready")

    assert status == 200, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    # No in-process worker: separate `celery worker` processes do the work when a broker is configured.
    assert set(checks) == {"database", "channel_layer", "broker"}
    assert all(check["ok"] for check in checks.values())


def test_the_embedded_server_runs_a_demo_agent_job_on_its_in_process_worker(embedded_server: tuple[str, str]) -> None:
    base, token = embedded_server

    status, job = http_json(
        f"{base}/api/v1/demo/agents/calculator/messages?wait=true&timeout=15",
        body={"content": "calculate 2 * (3 + 4)"},
        token=token,
    )

    assert status == 200, job
    assert job["status"] == "succeeded"
    assert job["output"]["content"] == [{"type": "text", "text": "The result is 14."}]
    status, events = http_json(f"{base}/api/v1/demo/threads/{job['thread']}/events/", token=token)
    assert status == 200
    sequence = [event["id"] for event in events["items"]]
    assert sequence == list(range(1, len(sequence) + 1))
    types = [event["type"] for event in events["items"]]
    assert types[:3] == ["message.created", "job.queued", "job.started"]
    assert {"tool.started", "tool.completed"} <= set(types)
    assert types[-1] == "job.succeeded"
