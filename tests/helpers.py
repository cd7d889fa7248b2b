"""What several test modules need: problem-details assertions, API clients with bearer credentials, and the
constants the tests share."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.db.models import Model
from django.urls import reverse
from rest_framework.test import APIClient

from aihub.celery import app as celery_app
from tests.factories import ApiTokenFactory

PROBLEM = "application/problem+json"
FORM = "application/x-www-form-urlencoded"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "correlation_id"}

DEFAULT_ROLE_NAMES = ["admin", "agent-user", "knowledge-admin", "member", "viewer"]
"""The roles every new tenant gets, sorted by name."""

API_TOKEN_SECRET = re.compile(r"aih_[0-9a-f]{12}_[A-Za-z0-9_\-]+")
"""An API token as it is handed out (``aih_<public id>_<secret>``): no page, output or record may show one."""

ADMIN_REQUEST_ID = "admin-site-request-1"
"""The X-Request-ID every request of the ``admin_site`` fixture carries."""

ClientAs = Callable[..., APIClient]
"""The type of the ``client_as`` fixture."""


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is an RFC 7807 problem with this status, complete, and correlated with its X-Request-ID.

    Returns the body.
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"].startswith("urn:aihub:problem:"), body
    assert body["title"], body
    assert body["detail"], body
    assert body["instance"] == response.wsgi_request.path, body
    assert body["correlation_id"], body
    assert body["correlation_id"] == response["X-Request-ID"]
    return body


def assert_invalid(response: Any, *fields: str) -> dict[str, Any]:
    """A 400 validation problem naming exactly these fields."""
    body = assert_problem(response, 400)
    assert sorted({error["field"] for error in body["errors"]}) == sorted(fields), body
    return body


def bearer(raw: str) -> APIClient:
    """An API client that sends ``raw`` as its bearer token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def client_for(user: Any, **token_kwargs: Any) -> APIClient:
    """An API client with a fresh token of ``user`` (for callers who need no membership, such as staff)."""
    return bearer(ApiTokenFactory.create(user=user, **token_kwargs).raw)


def admin_url(model: type[Model], view: str, *args: Any) -> str:
    """The URL of one of the admin's pages of an access model: ``admin_url(Tenant, "change", tenant.pk)``."""
    return reverse(f"admin:access_{model._meta.model_name}_{view}", args=args)


def drain_sent_messages(name: str) -> list[tuple[list[Any], str | None]]:
    """Take every message off the default Celery queue (the broker the suite runs with); returns the arguments
    and the ``eta`` header of each message of the task called ``name``, in order."""
    sent: list[tuple[list[Any], str | None]] = []
    with celery_app.connection_for_write() as connection:
        queue = connection.SimpleQueue("celery")
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                if message.headers.get("task") == name:
                    sent.append((list(message.decode()[0]), message.headers.get("eta")))
                message.ack()
        finally:
            queue.close()
    return sent


def drain_sent_tasks(name: str) -> list[str]:
    """Like ``drain_sent_messages``: the first argument of each message (the id the task is given)."""
    return [str(args[0]) for args, _ in drain_sent_messages(name)]
