"""Browser frontends on the allowed origins may call the API and read its headers; others may not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ALLOWED = "https://chat.example.com"
STRANGER = "https://evil.example.net"


@pytest.fixture(autouse=True)
def allowed_origins() -> Iterator[None]:
    with override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED]):
        yield


def _preflight(client: APIClient, origin: str, path: str = "/api/v1/me") -> object:
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, x-request-id",
    )


def _exposed(response: object) -> set[str]:
    return {name.strip().lower() for name in response["Access-Control-Expose-Headers"].split(",")}  # type: ignore[index]


def test_a_preflight_from_an_allowed_origin_may_send_credentials_headers(api_client: APIClient) -> None:
    response = _preflight(api_client, ALLOWED)

    assert response.status_code == 200  # type: ignore[attr-defined]
    assert response["Access-Control-Allow-Origin"] == ALLOWED  # type: ignore[index]
    allowed_headers = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}  # type: ignore[index]
    assert {"authorization", "content-type", "x-request-id"} <= allowed_headers
    assert "POST" in response["Access-Control-Allow-Methods"]  # type: ignore[index]


def test_a_preflight_from_another_origin_gets_no_cors_headers(api_client: APIClient) -> None:
    response = _preflight(api_client, STRANGER)

    assert "Access-Control-Allow-Origin" not in response  # type: ignore[operator]
    assert "Access-Control-Allow-Headers" not in response  # type: ignore[operator]


def test_a_response_to_an_allowed_origin_exposes_the_request_id_and_rate_limit_headers(
    api_client: APIClient,
) -> None:
    response = api_client.get("/api/v1/health", HTTP_ORIGIN=ALLOWED)

    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert {"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= _exposed(response)
    assert {"retry-after", "deprecation", "sunset", "link"} <= _exposed(response)


def test_an_error_to_an_allowed_origin_is_readable_by_the_browser(api_client: APIClient) -> None:
    # A problem the browser may not read is an opaque network error to the frontend.
    unauthenticated = api_client.get("/api/v1/me", HTTP_ORIGIN=ALLOWED)
    unknown_route = api_client.get("/api/v1/nothing/here", HTTP_ORIGIN=ALLOWED)

    for response in (unauthenticated, unknown_route):
        assert response["Content-Type"] == "application/problem+json"
        assert response["Access-Control-Allow-Origin"] == ALLOWED
        assert "x-request-id" in _exposed(response)


def test_a_response_to_another_origin_carries_no_cors_headers(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/health", HTTP_ORIGIN=STRANGER)

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_pages_outside_the_api_get_no_cors_headers(api_client: APIClient) -> None:
    response = api_client.get("/admin/login/", HTTP_ORIGIN=ALLOWED)

    assert "Access-Control-Allow-Origin" not in response


def test_a_browser_app_using_the_openai_sdk_passes_the_preflight(api_client: APIClient) -> None:
    # The headers openai-node adds to every request (its platform and retry headers, organization and project).
    sdk_headers = {
        "authorization",
        "content-type",
        "openai-organization",
        "openai-project",
        "x-stainless-arch",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-package-version",
        "x-stainless-retry-count",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-timeout",
    }
    response = _preflight(api_client, ALLOWED, "/openai/v1/chat/completions")

    assert response["Access-Control-Allow-Origin"] == ALLOWED  # type: ignore[index]
    allowed_headers = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}  # type: ignore[index]
    assert sdk_headers <= allowed_headers
