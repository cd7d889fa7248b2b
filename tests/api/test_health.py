"""Liveness answers while the process does; readiness checks each dependency for real and names what fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.utils import load_backend
from django.test import override_settings
from rest_framework.test import APIClient

from tests.helpers import assert_problem

pytestmark = pytest.mark.django_db

QUICK_CHECKS = {"READINESS_TIMEOUT_SECONDS": 0.5}


@pytest.fixture
def quick_checks() -> Iterator[None]:
    with override_settings(AIHUB=QUICK_CHECKS):
        yield


@pytest.fixture
def unreachable_channel_layer(closed_port: int) -> dict[str, Any]:
    """A CHANNEL_LAYERS setting whose Redis does not answer."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port}/0"]},
        }
    }


def test_liveness_needs_no_credentials(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_is_200_when_database_channel_layer_and_broker_answer(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/health/ready")

    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert {"database", "channel_layer", "broker"} <= checks.keys()
    assert all(check["ok"] for check in checks.values())
    assert all(check["duration_ms"] >= 0 for check in checks.values())


def _assert_not_ready_because_of(response: Any, failing: str) -> dict[str, Any]:
    body = assert_problem(response, 503)
    assert body["failing"] == [failing]
    assert failing in body["detail"]
    assert body["checks"][failing]["ok"] is False
    assert body["checks"][failing]["error"]
    assert all(result["ok"] for name, result in body["checks"].items() if name != failing)
    return body


@pytest.fixture
def unreachable_database(tmp_path: Path, closed_port: int) -> Iterator[None]:
    """The default database alias pointing somewhere nothing answers, for the length of the test.

    A second connection object is swapped in rather than the test's own being closed and re-pointed: the
    test's transaction (and SQLite's in-memory test database) live on that connection.
    """
    original = connections["default"]
    settings_dict = {**original.settings_dict}
    if original.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "no-such-directory" / "aihub.sqlite3")
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port))
        # Without the pool: the pool of the alias "default" belongs to the test's own connection, and is healthy.
        options = {key: value for key, value in settings_dict.get("OPTIONS", {}).items() if key != "pool"}
        settings_dict["OPTIONS"] = {**options, "connect_timeout": 1}
    broken = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias="default")
    connections["default"] = broken
    try:
        yield
    finally:
        connections["default"] = original
        broken.close()


def test_readiness_is_503_naming_the_database_when_it_is_unreachable(
    api_client: APIClient, unreachable_database: None
) -> None:
    response = api_client.get("/api/v1/health/ready")

    _assert_not_ready_because_of(response, "database")


def test_readiness_is_503_naming_the_channel_layer_when_redis_is_unreachable(
    api_client: APIClient, quick_checks: None, unreachable_channel_layer: dict[str, Any]
) -> None:
    # Channels drops its cached layers when CHANNEL_LAYERS changes, so the check builds one from this.
    with override_settings(CHANNEL_LAYERS=unreachable_channel_layer):
        response = api_client.get("/api/v1/health/ready")

    _assert_not_ready_because_of(response, "channel_layer")


def test_readiness_is_503_naming_the_broker_when_it_is_unreachable(
    api_client: APIClient, quick_checks: None, closed_port: int, broker_from_settings: None
) -> None:
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port}/0"):
        response = api_client.get("/api/v1/health/ready")

    _assert_not_ready_because_of(response, "broker")


def test_readiness_recovers_when_the_dependency_comes_back(
    api_client: APIClient, quick_checks: None, unreachable_channel_layer: dict[str, Any]
) -> None:
    with override_settings(CHANNEL_LAYERS=unreachable_channel_layer):
        assert api_client.get("/api/v1/health/ready").status_code == 503

    assert api_client.get("/api/v1/health/ready").status_code == 200


def test_readiness_reveals_no_credentials_of_the_failing_dependency(
    api_client: APIClient, quick_checks: None, closed_port: int, broker_from_settings: None
) -> None:
    with override_settings(CELERY_BROKER_URL=f"redis://:s3cret-password@127.0.0.1:{closed_port}/0"):
        response = api_client.get("/api/v1/health/ready")

    assert response.status_code == 503
    assert b"s3cret-password" not in response.content
