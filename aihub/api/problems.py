"""RFC 7807 problem details for every error under the API prefixes.

A problem is ``{"type", "title", "status", "detail", "instance", "correlation_id"}`` served as
``application/problem+json``; validation problems add ``errors``: ``[{"field", "message", "code"}]``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from aihub.context import request_id_var
from aihub.unavailable import log_unavailable, retry_after_seconds, unavailable_dependency, unavailable_detail

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
    422: ("unprocessable", "Unprocessable request"),
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


class ProblemException(exceptions.APIException):
    """An API error with its own problem type, title and extra members; ``wait`` (seconds) adds Retry-After."""

    type_slug: str | None = None
    title: str | None = None

    def __init__(self, detail: str, *, problem_extra: dict[str, Any] | None = None, wait: float | None = None):
        super().__init__(detail)
        self.problem_extra = problem_extra or {}
        self.wait = wait


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


def not_found(resource: str, key: object) -> Http404:
    """The API's one wording of a 404 for a resource: the same whether it does not exist, belongs to another
    tenant or is hidden from the caller, since telling those apart would say what exists elsewhere."""
    return Http404(f"No {resource} {str(key)[:200]!r}.")


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


def record_transaction_depth(request: HttpRequest) -> None:
    """Note how deep in atomic blocks each database is as the request starts (see ``set_rollback``)."""
    request._aihub_atomic_depth = {  # type: ignore[attr-defined]
        db.alias: len(db.atomic_blocks) for db in connections.all(initialized_only=True)
    }


def set_rollback(request: Any) -> None:
    """Mark for rollback every atomic block the request opened and is still inside.

    The exception handler turns an exception into a response, so an atomic block around the view (on
    ``dispatch``, or ATOMIC_REQUESTS) would otherwise see a normal return and commit a half-done write.
    DRF's own ``set_rollback`` only acts under ATOMIC_REQUESTS; this also covers ``transaction.atomic`` on
    the view, and leaves alone the blocks that were open before the request (a test's transaction).
    """
    depth_at_start: dict[str, int] | None = getattr(request, "_aihub_atomic_depth", None)
    for db in connections.all(initialized_only=True):
        if depth_at_start is None:
            opened_here = db.settings_dict["ATOMIC_REQUESTS"] and db.in_atomic_block
        else:
            opened_here = len(db.atomic_blocks) > depth_at_start.get(db.alias, 0)
        if opened_here:
            db.set_rollback(True)


def _retry_after(wait: float | None) -> int:
    return max(1, math.ceil(wait or 1))


def unavailable_problem(
    request: HttpRequest | None, exc: BaseException
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The 503 problem and its headers when ``exc`` is an unavailable dependency (aihub.unavailable), else None."""
    dependency = unavailable_dependency(exc)
    if dependency is None:
        return None
    instance = request.path if request is not None else ""
    log_unavailable(dependency, exc, instance)
    body = problem(status=503, detail=unavailable_detail(dependency), instance=instance, dependency=dependency)
    return body, {"Retry-After": str(retry_after_seconds())}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error becomes a problem; an unavailable dependency a 503 with Retry-After;
    unknown exceptions a 500 without internals."""
    request = context.get("request")
    instance = request.path if request is not None else ""
    unavailable = unavailable_problem(request, exc)
    if unavailable is not None:
        set_rollback(request)
        unavailable_body, retry_headers = unavailable
        return Response(unavailable_body, status=503, headers=retry_headers, content_type=PROBLEM_CONTENT_TYPE)
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        logger.exception("unhandled error in API view", exc_info=exc)
        set_rollback(request)
        body = problem(status=500, detail="An unexpected error occurred; quote the correlation id.", instance=instance)
        return Response(body, status=500, content_type=PROBLEM_CONTENT_TYPE)

    headers: dict[str, str] = {}
    if getattr(api_exc, "auth_header", None):
        headers["WWW-Authenticate"] = api_exc.auth_header  # type: ignore[attr-defined]
    if getattr(api_exc, "wait", None):
        headers["Retry-After"] = str(_retry_after(api_exc.wait))  # type: ignore[attr-defined]

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
            detail = f"Too many requests; retry in {_retry_after(api_exc.wait)} seconds."  # type: ignore[attr-defined]
        # An exception may name its own problem type and add members (see ProblemException).
        body = problem(
            status=api_exc.status_code,
            detail=str(detail),
            instance=instance,
            type_slug=getattr(api_exc, "type_slug", None),
            title=getattr(api_exc, "title", None),
            **getattr(api_exc, "problem_extra", {}),
        )
    set_rollback(request)
    return Response(body, status=api_exc.status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def service_errors(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A service's ValidationError as DRF's, keyed by field (``config.temperature`` for a class's schema) so the
    problem lists them per field; errors without a field go under ``""``."""
    return exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages})
