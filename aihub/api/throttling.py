"""Rate limits per credential and per client address, reported in ``X-RateLimit-*`` headers.

The address limit is checked before authentication (see ApiMixin.perform_authentication) so that guessing
tokens is rate limited too; the credential limit after it. Counters live in the default cache, which is
Redis when REDIS_URL is set, so every web process shares them.
"""

from __future__ import annotations

import time
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from aihub.conf import aihub_settings


class _ReportingRateThrottle(SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"

    def get_rate(self) -> str | None:
        return aihub_settings.THROTTLE_RATES.get(self.scope)

    def __init__(self) -> None:
        # Read the rate per request: settings may change (tests, reloads) after the class is imported.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def allow_request(self, request: Request, view: Any) -> bool:
        allowed = super().allow_request(request, view)
        if self.rate is not None and self.key is not None and self.num_requests and self.duration:
            remaining = max(0, self.num_requests - len(self.history))
            oldest = self.history[-1] if self.history else self.now
            request._request.rate_limit = {  # type: ignore[attr-defined]
                "limit": self.num_requests,
                "remaining": remaining,
                "reset": int(oldest + self.duration),
            }
        return allowed

    def wait(self) -> float | None:
        wait = super().wait()
        return None if wait is None else max(1.0, wait)

    timer = time.time


class TokenRateThrottle(_ReportingRateThrottle):
    """Per credential: the API token, the OAuth2 token's application, or the user of a session or SSO JWT."""

    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        auth = request.auth
        token_id = getattr(auth, "pk", None)
        ident = f"{type(auth).__name__}:{token_id}" if token_id is not None else f"user:{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class IpRateThrottle(_ReportingRateThrottle):
    scope = "ip"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
