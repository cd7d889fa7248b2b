"""Request ids, problem details for anything that escapes a view, and the API's response headers."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from aihub.api.problems import PROBLEM_CONTENT_TYPE, problem_response, record_transaction_depth
from aihub.conf import aihub_settings
from aihub.context import client_ip_var, request_id_var

logger = logging.getLogger(__name__)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "content-language"})


def _under_problem_prefix(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in aihub_settings.PROBLEM_PATH_PREFIXES)


class RequestIdMiddleware:
    """Takes a well-formed ``X-Request-ID`` from the client or makes one; echoes it and puts it in logs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        id_token = request_id_var.set(request_id)
        ip_token = client_ip_var.set(request.META.get("REMOTE_ADDR") or None)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(id_token)
            client_ip_var.reset(ip_token)
        response["X-Request-ID"] = request_id
        return response


class ProblemDetailsMiddleware:
    """Under the API prefixes no HTML error page and no stack trace reaches a client, DEBUG or not."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        record_transaction_depth(request)
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and _under_problem_prefix(request.path)
            and not response.get("Content-Type", "").startswith(("application/json", PROBLEM_CONTENT_TYPE))
        ):
            replacement = problem_response(request, status=response.status_code, detail=_detail_for(response))
            # Everything but the body's own headers stays: Allow, WWW-Authenticate, Retry-After, and the CORS
            # headers without which a browser could not read the problem at all.
            for header, value in response.items():
                if header.lower() not in _BODY_HEADERS:
                    replacement[header] = value
            replacement.cookies = response.cookies
            return replacement
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _under_problem_prefix(request.path):
            return None
        logger.exception("unhandled error at %s", request.path, exc_info=exception)
        return problem_response(request, status=500, detail="An unexpected error occurred; quote the correlation id.")


def _detail_for(response: HttpResponse) -> str:
    return {
        400: "The request could not be understood.",
        403: "The request was refused.",
        404: "Nothing is here.",
        405: "This method is not allowed here.",
        413: "The request body is too large.",
        500: "An unexpected error occurred; quote the correlation id.",
    }.get(response.status_code, response.reason_phrase)


class ApiResponseHeadersMiddleware:
    """Adds the rate-limit state the throttles recorded on the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        rate_limit: dict[str, Any] | None = getattr(request, "rate_limit", None)
        if rate_limit is not None:
            response["X-RateLimit-Limit"] = str(rate_limit["limit"])
            response["X-RateLimit-Remaining"] = str(rate_limit["remaining"])
            response["X-RateLimit-Reset"] = str(rate_limit["reset"])
        return response
