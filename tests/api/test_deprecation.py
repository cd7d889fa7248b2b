"""A route marked deprecated says so in its headers and in the OpenAPI document."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from rest_framework.test import APIClient

from tests.api.urls import DEPRECATED_SINCE, DEPRECATION_LINK, SUNSET

pytestmark = pytest.mark.django_db


def test_a_deprecated_route_sends_deprecation_sunset_and_link(test_urls: None, api_client: APIClient) -> None:
    response = api_client.get("/api/v1/_test/deprecated")

    assert response.status_code == 200
    assert response["Deprecation"] == f"@{int(DEPRECATED_SINCE.timestamp())}"
    assert parsedate_to_datetime(response["Sunset"]) == SUNSET
    assert response["Sunset"].endswith("GMT")
    assert response["Link"].startswith(f"<{DEPRECATION_LINK}>")
    assert 'rel="deprecation"' in response["Link"]


def test_a_deprecated_route_says_so_on_its_errors_too(test_urls: None, api_client: APIClient) -> None:
    response = api_client.post("/api/v1/_test/deprecated")

    assert response.status_code == 405
    assert "Deprecation" in response


def test_other_routes_are_not_deprecated(test_urls: None, api_client: APIClient) -> None:
    response = api_client.get("/api/v1/health")

    assert "Deprecation" not in response
    assert "Sunset" not in response


def test_the_schema_marks_the_operation_deprecated(test_urls: None, api_client: APIClient) -> None:
    schema = api_client.get("/api/v1/schema/", {"format": "json"}).json()

    assert schema["paths"]["/api/v1/_test/deprecated"]["get"]["deprecated"] is True
    assert "deprecated" not in schema["paths"]["/api/v1/health"]["get"]
