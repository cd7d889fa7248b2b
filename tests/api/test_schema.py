"""The OpenAPI document generates cleanly and tells clients about credentials, errors and list envelopes."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from rest_framework import serializers
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

TENANT_PREFIX = "/api/v1/{tenant}/"
METHODS = {"get", "post", "put", "patch", "delete"}
PROBLEM = "application/problem+json"
API_PREFIX = "/api/"  # aihub's own API; /openai/ answers in OpenAI's shapes (see the test at the end)


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any) -> dict[str, Any]:
    """The schema exactly as ``manage.py spectacular --validate --fail-on-warn`` writes it."""
    path = tmp_path_factory.mktemp("openapi") / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return dict(yaml.safe_load(Path(path).read_text()))


def _operations(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_schema_generates_and_validates_without_warnings(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    assert schema["paths"]


def test_the_schema_documents_every_kind_of_credential(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]

    assert schemes.keys() >= {"apiToken", "oauth2", "ssoJwt", "session"}
    assert schemes["apiToken"]["scheme"] == "bearer"
    assert schemes["oauth2"]["flows"].keys() == {"authorizationCode", "clientCredentials"}


def test_every_tenant_operation_documents_401_403_and_404_as_problems(schema: dict[str, Any]) -> None:
    operations = _operations(schema, TENANT_PREFIX)
    assert operations

    for path, method, operation in operations:
        for status in ("401", "403", "404"):
            response = operation["responses"].get(status)
            assert response is not None, f"{method.upper()} {path} does not document {status}"
            assert PROBLEM in response["content"], f"{method.upper()} {path} {status} is not a problem"


def test_every_operation_that_takes_a_body_documents_400_as_a_problem(schema: dict[str, Any]) -> None:
    for path, method, operation in _operations(schema, API_PREFIX):
        if "requestBody" in operation:
            assert PROBLEM in operation["responses"]["400"]["content"], f"{method.upper()} {path}"


def test_every_operation_documents_the_503_of_an_outage_or_an_overload_as_a_problem(schema: dict[str, Any]) -> None:
    for path, method, operation in _operations(schema):
        response = operation["responses"].get("503")
        assert response is not None, f"{method.upper()} {path} does not document 503"
        # A problem everywhere; the readiness probe's own 503 lists the failing checks as JSON.
        assert {PROBLEM, "application/json"} & set(response["content"]), f"{method.upper()} {path}"


def test_problem_details_are_a_documented_component(schema: dict[str, Any]) -> None:
    problem = schema["components"]["schemas"]["Problem"]

    assert {"type", "title", "status", "detail", "instance", "correlation_id"} <= problem["properties"].keys()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_list_responses_use_the_envelope(schema: dict[str, Any]) -> None:
    roles = schema["paths"][f"{TENANT_PREFIX}roles/"]["get"]
    body = _resolve(schema, roles["responses"]["200"]["content"]["application/json"]["schema"])

    assert set(body["required"]) == {"items", "total", "limit", "offset"}
    assert body["properties"]["items"]["type"] == "array"
    assert {parameter["name"] for parameter in roles["parameters"]} >= {"limit", "offset"}


def _nullable(node: dict[str, Any]) -> bool:
    return bool(node.get("nullable")) or any(_nullable(part) for part in node.get("oneOf", []) + node.get("allOf", []))


def _serializer_classes(base: type[serializers.Serializer[Any]]) -> Iterator[type[serializers.Serializer[Any]]]:
    for subclass in base.__subclasses__():
        yield subclass
        yield from _serializer_classes(subclass)


def _may_be_null(
    serializer: type[serializers.Serializer[Any]], name: str, field: serializers.Field[Any, Any, Any, Any]
) -> bool:
    if isinstance(field, serializers.SerializerMethodField):
        method = getattr(serializer, field.method_name or f"get_{name}")
        return type(None) in typing.get_args(typing.get_type_hints(method).get("return"))
    return bool(field.allow_null)


def test_every_field_a_response_may_give_as_null_is_nullable_in_the_schema(schema: dict[str, Any]) -> None:
    # The serializers are all imported: generating the schema walked every route.
    components = schema["components"]["schemas"]
    not_nullable = []
    for serializer in set(_serializer_classes(serializers.Serializer)):
        component = components.get(serializer.__name__.removesuffix("Serializer"))
        if component is None:
            continue
        for name, field in serializer().fields.items():
            documented = component.get("properties", {}).get(name)
            if documented is not None and _may_be_null(serializer, name, field) and not _nullable(documented):
                not_nullable.append(f"{serializer.__name__}.{name}")

    assert not_nullable == []


def test_the_memory_score_is_a_number_or_null(schema: dict[str, Any]) -> None:
    score = schema["components"]["schemas"]["Memory"]["properties"]["score"]

    assert (score["type"], score["nullable"]) == ("number", True)


def test_no_response_example_shows_null_where_the_schema_forbids_it(schema: dict[str, Any]) -> None:
    contradictions = []
    for path, method, operation in _operations(schema):
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                body = _resolve(schema, media.get("schema", {}))
                for example in media.get("examples", {}).values():
                    value = example.get("value")
                    items = value["items"] if isinstance(value, dict) and "items" in value else [value]
                    properties = body.get("properties", {})
                    if "items" in properties:
                        properties = _resolve(schema, properties["items"].get("items", {})).get("properties", {})
                    for item in items:
                        for key, member in (item or {}).items() if isinstance(item, dict) else []:
                            if member is None and key in properties and not _nullable(properties[key]):
                                contradictions.append(f"{method.upper()} {path} {status}: {key}")

    assert contradictions == []


def test_every_event_stream_is_documented_as_server_sent_events_of_events(schema: dict[str, Any]) -> None:
    streams = {
        f"{method.upper()} {path}": response["content"]["text/event-stream"]["schema"]
        for path, method, operation in _operations(schema, API_PREFIX)
        for status, response in operation["responses"].items()
        if status == "200" and "text/event-stream" in response.get("content", {})
    }

    assert set(streams) == {
        f"GET {TENANT_PREFIX}threads/{{id}}/stream",
        f"GET {TENANT_PREFIX}jobs/{{id}}/stream",
        f"POST {TENANT_PREFIX}threads/{{id}}/messages/",
        f"POST {TENANT_PREFIX}agents/{{slug}}/messages",
    }
    for route, documented in streams.items():
        assert (documented["type"], documented["format"]) == ("string", "event-stream"), route
        assert "not JSON" in documented["description"], route
        event, stream_mode = documented["x-sse-data"]["oneOf"]
        assert _resolve(schema, event) == schema["components"]["schemas"]["Event"], route
        assert stream_mode["properties"]["type"]["enum"] == ["stream.mode"], route


def test_the_schema_is_served_as_json(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "aihub API"


@pytest.mark.parametrize("page", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_documentation_pages_render(api_client: APIClient, page: str) -> None:
    response = api_client.get(page)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"/api/v1/schema/" in response.content


def test_the_openai_responses_routes_are_documented_with_openais_errors(schema: dict[str, Any]) -> None:
    operations = {f"{method.upper()} {path}": operation for path, method, operation in _operations(schema, "/openai/")}

    assert set(operations) == {
        "POST /openai/v1/responses",
        "GET /openai/v1/responses/{response_id}",
        "DELETE /openai/v1/responses/{response_id}",
        "POST /openai/v1/responses/{response_id}/cancel",
        "GET /openai/v1/responses/{response_id}/input_items",
    }
    for route, operation in operations.items():
        for status in ("401", "404", "429", "503"):
            content = operation["responses"][status]["content"]
            assert set(content) == {"application/json"}, f"{route} {status}"
            assert _resolve(schema, content["application/json"]["schema"])["properties"].keys() == {"error"}, route
    create = operations["POST /openai/v1/responses"]
    assert {"application/json", "text/event-stream"} <= create["responses"]["200"]["content"].keys()
    assert create["requestBody"]["content"]["application/json"]["examples"]
