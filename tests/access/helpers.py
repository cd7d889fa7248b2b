"""Assertions shared by the access API tests."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from aihub.access.models import ApiToken
from tests.factories import ApiTokenFactory

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is an RFC 7807 problem with this status; returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def assert_invalid(response: Any, *fields: str) -> dict[str, Any]:
    """A 400 validation problem naming exactly these fields."""
    body = assert_problem(response, 400)
    assert sorted({error["field"] for error in body["errors"]}) == sorted(fields), body
    return body


def client_for(user: Any, **token_kwargs: Any) -> APIClient:
    """An API client with a fresh token of ``user`` (for callers who need no membership, such as staff)."""
    token: ApiToken = ApiTokenFactory.create(user=user, **token_kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.raw}")  # type: ignore[attr-defined]
    return client
