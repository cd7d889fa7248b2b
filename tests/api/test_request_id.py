"""Every response carries a request id; the client may choose it; logs and problems quote it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from aihub.context import RequestIdLogFilter, request_id_var
from tests.helpers import assert_problem

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def caplog_with_request_ids(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog whose handler carries the filter the LOGGING setting puts on the console handler."""
    log_filter = RequestIdLogFilter()
    caplog.handler.addFilter(log_filter)
    caplog.set_level(logging.INFO)
    yield caplog
    caplog.handler.removeFilter(log_filter)


def test_a_request_without_an_id_is_given_one(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/health")

    assert GENERATED.match(response["X-Request-ID"])


def test_each_request_gets_its_own_id(api_client: APIClient) -> None:
    first = api_client.get("/api/v1/health")["X-Request-ID"]
    second = api_client.get("/api/v1/health")["X-Request-ID"]

    assert first != second


def test_a_well_formed_client_id_is_echoed_and_used_as_the_correlation_id(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/me", HTTP_X_REQUEST_ID="frontend-7f3a.42:retry-1")

    assert response["X-Request-ID"] == "frontend-7f3a.42:retry-1"
    assert assert_problem(response, 401)["correlation_id"] == "frontend-7f3a.42:retry-1"


@pytest.mark.parametrize(
    "incoming",
    ["x" * 129, "has spaces in it", "<script>alert(1)</script>", "semi;colon", "ünïcode", ""],
    ids=["oversized", "spaces", "markup", "semicolon", "non-ascii", "empty"],
)
def test_a_malformed_or_oversized_client_id_is_replaced(api_client: APIClient, incoming: str) -> None:
    response = api_client.get("/api/v1/me", HTTP_X_REQUEST_ID=incoming)

    assert GENERATED.match(response["X-Request-ID"])
    assert assert_problem(response, 401)["correlation_id"] == response["X-Request-ID"]


def test_the_longest_allowed_client_id_is_kept(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/health", HTTP_X_REQUEST_ID="a" * 128)

    assert response["X-Request-ID"] == "a" * 128


def test_log_records_during_a_request_carry_its_id(
    test_urls: None, api_client: APIClient, caplog_with_request_ids: pytest.LogCaptureFixture
) -> None:
    api_client.get("/api/v1/_test/boom", HTTP_X_REQUEST_ID="trace-me-1234")

    from_the_request = [r for r in caplog_with_request_ids.records if r.name.startswith("aihub")]
    assert from_the_request
    assert {record.request_id for record in from_the_request} == {"trace-me-1234"}  # type: ignore[attr-defined]


def test_log_records_outside_a_request_say_so(caplog_with_request_ids: pytest.LogCaptureFixture) -> None:
    logging.getLogger("aihub.test").info("between requests")

    assert caplog_with_request_ids.records[-1].request_id == "-"  # type: ignore[attr-defined]


def test_the_id_does_not_leak_into_the_next_request(api_client: APIClient) -> None:
    api_client.get("/api/v1/health", HTTP_X_REQUEST_ID="first-request")

    assert request_id_var.get() == ""
    assert api_client.get("/api/v1/health")["X-Request-ID"] != "first-request"
