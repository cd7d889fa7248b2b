"""OpenAPI: problem-details error responses on every operation and the security schemes of our credentials."""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

from aihub.api.pagination import CursorOrOffsetPagination
from aihub.api.problems import PROBLEM_CONTENT_TYPE


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="Dotted path of the offending field; empty for the whole body.")
    message = serializers.CharField()
    code = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 7807 problem details."""

    type = serializers.CharField(help_text="A URN naming the kind of problem, e.g. urn:aihub:problem:not-found.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(help_text="The request path.")
    correlation_id = serializers.CharField(help_text="The request id, also in the X-Request-ID header.")
    errors = ProblemFieldErrorSerializer(  # type: ignore[assignment]
        many=True, required=False, help_text="Validation errors, one per field."
    )


ERROR_DESCRIPTIONS = {
    "400": "Malformed or invalid request or query parameters (validation errors are listed per field)",
    "401": "Missing, invalid, expired or revoked credentials",
    "403": "The credential or role does not allow this",
    "404": "No such resource, or not visible to the caller",
    "429": "Rate limited; see Retry-After",
    "503": "A dependency is unavailable (database, Redis, broker) or the server is overloaded; see Retry-After",
}


class AutoSchema(SpectacularAutoSchema):
    """Adds the problem-details responses an operation can give, so clients see every error shape."""

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        wanted = ["429", "503"]
        if self.get_auth():
            wanted += ["401", "403"]
        # Query parameters are validated like bodies: a filter, cursor or date that does not parse is a 400.
        if self.method in ("POST", "PUT", "PATCH") or any(p["in"] == "query" for p in self._get_parameters()):
            wanted.append("400")
        if "{" in self.path:
            wanted.append("404")
        problem_ref = self.resolve_serializer(ProblemSerializer, direction).ref
        for status in wanted:
            responses.setdefault(
                status,
                {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}},
                },
            )
        return responses

    def get_paginated_name(self, serializer_name: str) -> str:
        # The same item type can be listed by offset in one place and by cursor or offset in another: the two
        # envelopes are different components.
        if isinstance(self._get_paginator(), CursorOrOffsetPagination):
            return f"{serializer_name}CursorOrOffsetPage"
        return super().get_paginated_name(serializer_name)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "aihub.access.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "aih_<id>_<secret>",
            "description": "An API token from /api/v1/tokens/.",
        }


class ExternalJwtScheme(OpenApiAuthenticationExtension):
    target_class = "aihub.access.authentication.ExternalJwtAuthentication"
    name = "ssoJwt"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from a configured OpenID Connect issuer (single sign-on).",
        }


class OAuth2Scheme(OpenApiAuthenticationExtension):
    target_class = "aihub.access.authentication.OAuth2Authentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        from django.conf import settings

        spectacular = settings.SPECTACULAR_SETTINGS
        scopes = spectacular["OAUTH2_SCOPES"]
        return {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": spectacular["OAUTH2_AUTHORIZATION_URL"],
                    "tokenUrl": spectacular["OAUTH2_TOKEN_URL"],
                    "refreshUrl": spectacular["OAUTH2_REFRESH_URL"],
                    "scopes": scopes,
                },
                "clientCredentials": {"tokenUrl": spectacular["OAUTH2_TOKEN_URL"], "scopes": scopes},
            },
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        needed = "read" if auto_schema.method in ("GET", "HEAD", "OPTIONS") else "write"
        return {self.name: [needed]}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "aihub.access.authentication.SessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


def openapi_30_schema(node: Any, defs: dict[str, Any]) -> Any:
    """Pydantic's JSON Schema (2020-12) as OpenAPI 3.0 accepts it: $defs inlined, ``const`` as a one-value
    enum, ``anyOf [X, null]`` as a nullable X, and no discriminator (its mapping would point at the $defs)."""
    if isinstance(node, list):
        return [openapi_30_schema(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return openapi_30_schema(defs[ref.removeprefix("#/$defs/")], defs)
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        merged = rest[0] if len(rest) == 1 else {"anyOf": rest}
        extra = {key: value for key, value in node.items() if key != "anyOf"}
        return {**openapi_30_schema(merged, defs), **openapi_30_schema(extra, defs), "nullable": True}
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "discriminator":
            continue
        if key == "const":
            converted["enum"] = [value]
        elif key == "properties":
            converted[key] = {name: openapi_30_schema(prop, defs) for name, prop in value.items()}
        else:
            converted[key] = openapi_30_schema(value, defs)
    return converted
