"""What every problem-details response has in common, asserted once."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "correlation_id"}


def assert_problem(response: HttpResponse, status: int) -> dict[str, Any]:
    """Assert ``response`` is an RFC 7807 problem with ``status`` whose correlation id is the X-Request-ID."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()  # type: ignore[attr-defined]
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["type"].startswith("urn:aihub:problem:")
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.wsgi_request.path  # type: ignore[attr-defined]
    assert body["correlation_id"]
    assert body["correlation_id"] == response["X-Request-ID"]
    return body
