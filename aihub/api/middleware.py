"""Request ids, problem details for anything that escapes a view, the API's response headers, static files.

Every middleware here is sync *and* async capable (Django's hybrid middleware): under ASGI one sync-only
middleware would make Django run the whole rest of the chain, async views included, on a thread per request,
and a request waiting for a job would hold that thread.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from aihub.api.problems import PROBLEM_CONTENT_TYPE, problem_response, record_transaction_depth, unavailable_problem
from aihub.conf import aihub_settings
from aihub.context import client_ip_var, request_id_var

logger = logging.getLogger(__name__)

VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "content-language"})


def _under_problem_prefix(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in aihub_settings.PROBLEM_PATH_PREFIXES)


class HybridMiddleware:
    """A middleware that runs in the mode of the chain around it: ``before``, the next handler, ``after``.

    Subclasses override ``before`` (called first, may return a token) and ``after`` (given the token and the
    response); both are quick and do no I/O, so the same code serves the sync and the async chain.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        token = self.before(request)
        try:
            response = self.get_response(request)
        finally:
            self.cleanup(token)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = self.before(request)
        try:
            response = await self.get_response(request)
        finally:
            self.cleanup(token)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> Any:
        return None

    def cleanup(self, token: Any) -> None:
        """Undo ``before`` whatever happened next (context variables are reset here)."""

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class RequestIdMiddleware(HybridMiddleware):
    """Takes a well-formed ``X-Request-ID`` from the client or makes one; echoes it and puts it in logs."""

    def before(self, request: HttpRequest) -> Any:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id_var.set(request_id), client_ip_var.set(request.META.get("REMOTE_ADDR") or None)

    def cleanup(self, token: Any) -> None:
        id_token, ip_token = token
        request_id_var.reset(id_token)
        client_ip_var.reset(ip_token)

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response


class ProblemDetailsMiddleware(HybridMiddleware):
    """Under the API prefixes no HTML error page and no stack trace reaches a client, DEBUG or not."""

    def before(self, request: HttpRequest) -> Any:
        record_transaction_depth(request)

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
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
        unavailable = unavailable_problem(request, exception)
        if unavailable is not None:
            body, headers = unavailable
            if _under_problem_prefix(request.path):
                response: HttpResponse = JsonResponse(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
            else:
                response = HttpResponse(body["detail"], status=503, content_type="text/plain; charset=utf-8")
            for header, value in headers.items():
                response[header] = value
            return response
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


class ApiResponseHeadersMiddleware(HybridMiddleware):
    """Adds the rate-limit state the throttles recorded on the request."""

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        rate_limit: dict[str, Any] | None = getattr(request, "rate_limit", None)
        if rate_limit is not None:
            response["X-RateLimit-Limit"] = str(rate_limit["limit"])
            response["X-RateLimit-Remaining"] = str(rate_limit["remaining"])
            response["X-RateLimit-Reset"] = str(rate_limit["reset"])
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, which is sync-only, made hybrid: static files are served as WhiteNoise serves them, and every
    other request goes on down an async chain without a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if self.autorefresh:
            # Looking a file up reads the disk (DEBUG); only paths under the static prefix can be files.
            static_file = await sync_to_async(self.find_file)(path) if path.startswith(self.static_prefix) else None
        else:
            static_file = self.files.get(path)
        if static_file is not None:
            return self.serve(static_file, request)
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response
