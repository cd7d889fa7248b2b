"""Marking a route deprecated: ``Deprecation`` (RFC 9745), ``Sunset`` (RFC 8594) and a ``Link`` to read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

ViewClass = TypeVar("ViewClass", bound=type[APIView])


def deprecated_route(
    *, since: datetime, sunset: datetime | None = None, link: str | None = None
) -> Callable[[ViewClass], ViewClass]:
    """Class decorator: every response of the view carries the headers; the schema marks it deprecated."""
    headers = {"Deprecation": f"@{int(since.replace(tzinfo=since.tzinfo or UTC).timestamp())}"}
    if sunset is not None:
        headers["Sunset"] = format_datetime(sunset.astimezone(UTC), usegmt=True)
    if link is not None:
        headers["Link"] = f'<{link}>; rel="deprecation"; type="text/html"'

    def decorate(view_class: ViewClass) -> ViewClass:
        original = view_class.finalize_response

        def finalize_response(self: APIView, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
            response = original(self, request, response, *args, **kwargs)
            for name, value in headers.items():
                response[name] = value
            return response

        view_class.finalize_response = finalize_response  # type: ignore[method-assign]
        return extend_schema(deprecated=True)(view_class)

    return decorate
