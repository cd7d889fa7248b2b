"""A test URLconf: the real routes plus views that fail in the ways the API conventions must contain.

Used with ``override_settings(ROOT_URLCONF="tests.api.urls")``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access import services
from aihub.api.base import ApiView
from aihub.api.deprecation import deprecated_route

SECRET_IN_EXCEPTION = "database password is hunter2"
HALF_WRITTEN_SLUG = "half-written"
DEPRECATED_SINCE = datetime(2025, 1, 1, tzinfo=UTC)
SUNSET = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
DEPRECATION_LINK = "https://docs.example.com/migrate"

Ok = inline_serializer("TestOk", {"ok": serializers.BooleanField()})


class BoomView(ApiView):
    """An API view with a bug in it."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses=Ok)
    def get(self, request: Request) -> Response:
        raise RuntimeError(SECRET_IN_EXCEPTION)


def plain_django_boom(request: HttpRequest) -> HttpResponse:
    """A plain Django view under /api/ with a bug in it (no DRF exception handler in the way)."""
    raise RuntimeError(SECRET_IN_EXCEPTION)


@method_decorator(transaction.atomic, name="dispatch")
class HalfWriteView(ApiView):
    """Writes through a service, then fails, all inside one transaction around the whole view."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(request=None, responses=Ok)
    def post(self, request: Request) -> Response:
        services.tenant_create(slug=HALF_WRITTEN_SLUG, name="Half written")
        if request.query_params.get("fail") == "validation":
            raise ValidationError({"name": "Rejected after the write."})
        raise RuntimeError(SECRET_IN_EXCEPTION)


@deprecated_route(since=DEPRECATED_SINCE, sunset=SUNSET, link=DEPRECATION_LINK)
class DeprecatedView(ApiView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses=Ok)
    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path("api/v1/_test/boom", BoomView.as_view()),
    path("api/v1/_test/plain-boom", plain_django_boom),
    path("api/v1/_test/half-write", HalfWriteView.as_view()),
    path("api/v1/_test/deprecated", DeprecatedView.as_view()),
    path("", include("aihub.urls")),
]
