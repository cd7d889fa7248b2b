"""RFC 7807 problem details for every error under the API prefixes.

A problem is ``{"type", "title", "status", "detail", "instance", "correlation_id"}`` served as
``application/problem+json``; validation problems add ``errors``: ``[{"field", "message", "code"}]``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from aihub.context import request_id_var

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "urn:aihub:problem:"

# status -> (type slug, title)
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("not-authenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("rate-limited", "Too many requests"),
    500: ("server-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "The request conflicts with the resource's current state."
    default_code = "conflict"


def problem(
    *,
    status: int,
    detail: str,
    instance: str = "",
    type_slug: str | None = None,
    title: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    default_slug, default_title = _BY_STATUS.get(status, ("error", "Error"))
    return {
        "type": TYPE_BASE + (type_slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "correlation_id": request_id_var.get(),
        **extra,
    }


def problem_response(request: HttpRequest, *, status: int, detail: str, **extra: Any) -> JsonResponse:
    """A plain Django response carrying a problem (for middleware and Django's error handlers)."""
    return JsonResponse(
        problem(status=status, detail=detail, instance=request.path, **extra),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _flatten_errors(data: Any, prefix: str = "") -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix or ""
            errors.extend(_flatten_errors(value, name))
    elif isinstance(data, list):
        if all(isinstance(item, str) for item in data):
            for item in data:
                errors.append({"field": prefix, "message": str(item), "code": getattr(item, "code", "invalid")})
        else:
            for index, item in enumerate(data):
                errors.extend(_flatten_errors(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        errors.append({"field": prefix, "message": str(data), "code": getattr(data, "code", "invalid")})
    return errors


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, SuspiciousOperation):
        return exceptions.ParseError("The request was refused as malformed.")
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error becomes a problem; unknown exceptions a 500 without internals."""
    request = context.get("request")
    instance = request.path if request is not None else ""
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        logger.exception("unhandled error in API view", exc_info=exc)
        set_rollback()
        body = problem(status=500, detail="An unexpected error occurred; quote the correlation id.", instance=instance)
        return Response(body, status=500, content_type=PROBLEM_CONTENT_TYPE)

    headers: dict[str, str] = {}
    if getattr(api_exc, "auth_header", None):
        headers["WWW-Authenticate"] = api_exc.auth_header  # type: ignore[attr-defined]
    if getattr(api_exc, "wait", None):
        headers["Retry-After"] = str(int(api_exc.wait))  # type: ignore[attr-defined]

    extra: dict[str, Any] = {}
    if isinstance(api_exc, exceptions.ValidationError):
        extra["errors"] = _flatten_errors(api_exc.detail)
        detail = "The request is invalid; see errors."
        body = problem(
            status=400,
            detail=detail,
            instance=instance,
            type_slug="validation-error",
            title="Invalid request",
            **extra,
        )
    else:
        detail = api_exc.detail if isinstance(api_exc.detail, str) else str(api_exc.detail)
        if isinstance(api_exc, exceptions.Throttled):
            detail = f"Too many requests; retry in {int(api_exc.wait or 1)} seconds."  # type: ignore[attr-defined]
        body = problem(status=api_exc.status_code, detail=str(detail), instance=instance)
    set_rollback()
    return Response(body, status=api_exc.status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
