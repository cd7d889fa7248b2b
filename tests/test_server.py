"""The real ASGI server (daphne), embedded and scaled out: it answers, and readiness sees every dependency."""

from __future__ import annotations

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
