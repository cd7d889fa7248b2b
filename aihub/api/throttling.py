"""Rate limits per credential and per client address, reported in ``X-RateLimit-*`` headers.

The address limit is checked before authentication (see ApiMixin.perform_authentication) so that guessing
tokens is rate limited too; the credential limit after it. Counters live in the default cache, which is
Redis when REDIS_URL is set, so every web process shares them.

Each limit is a sliding window counter kept with the cache's atomic ``incr`` (Redis ``INCR``): DRF's default
keeps a list of timestamps that it reads, changes and writes back, which lets concurrent requests from one
client overwrite each other's entries and slip past the limit.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from aihub.conf import aihub_settings


class _ReportingRateThrottle(SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"
    # Static so that it is a plain clock both here and when a test gives an instance its own.
    timer: Callable[[], float] = staticmethod(time.time)

    def __init__(self) -> None:
        # Read the rate per instance: settings may change (tests, reloads) after the class is imported.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.retry_at: float | None = None

    def get_rate(self) -> str | None:
        return aihub_settings.THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None or not self.num_requests or not self.duration:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        limit, duration = self.num_requests, self.duration
        self.now = self.timer()
        window = int(self.now // duration)
        window_start = float(window * duration)
        # Sliding window counter: the previous window's count, weighted by how much of it still overlaps the
        # last `duration` seconds, plus the current window's. No burst of twice the limit at a window edge.
        current_key = f"{self.key}:{window}"
        current = self._increment(current_key, timeout=2 * duration + 5)
        previous = int(self.cache.get(f"{self.key}:{window - 1}") or 0)
        weight = 1.0 - (self.now - window_start) / duration
        estimate = previous * weight + current
        allowed = estimate <= limit
        if not allowed:
            # A refused request does not use up budget, so a client that waits for Retry-After gets in.
            with contextlib.suppress(ValueError):  # the window's key expired meanwhile: nothing to give back
                self.cache.decr(current_key)
            current -= 1
            if current < limit:
                self.retry_at = window_start + duration * (1.0 - (limit - current - 1) / previous)
            else:
                self.retry_at = window_start + duration + duration / limit
        if current:
            reset_at = window_start + 2 * duration
        elif previous:
            reset_at = window_start + duration
        else:
            reset_at = self.now
        remaining = max(0, math.floor(limit - (previous * weight + current)))
        self._report(request, limit=limit, remaining=remaining, reset_at=reset_at)
        return allowed

    def _increment(self, key: str, *, timeout: int) -> int:
        self.cache.add(key, 0, timeout)
        try:
            return int(self.cache.incr(key))
        except ValueError:  # expired between add and incr
            self.cache.add(key, 1, timeout)
            return 1

    def _report(self, request: Request, *, limit: int, remaining: int, reset_at: float) -> None:
        # With two limits in play the client sees the one closer to refusing it.
        current: dict[str, Any] | None = getattr(request._request, "rate_limit", None)
        if current is not None and current["remaining"] < remaining:
            return
        request._request.rate_limit = {  # type: ignore[attr-defined]
            "limit": limit,
            "remaining": remaining,
            # When the whole budget is back: the current window's count has then slid out entirely.
            "reset": math.ceil(reset_at),
        }

    def wait(self) -> float | None:
        if self.retry_at is None:
            return None
        return float(max(1, math.ceil(self.retry_at - self.now)))


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
    """Per client address, counted once per request although API views consult it twice (before and after
    authentication)."""

    scope = "ip"

    def allow_request(self, request: Request, view: Any) -> bool:
        verdict: bool | None = getattr(request._request, "_aihub_ip_throttle_verdict", None)
        if verdict is not None:
            return verdict
        verdict = super().allow_request(request, view)
        request._request._aihub_ip_throttle_verdict = verdict  # type: ignore[attr-defined]
        return verdict

    def get_ident(self, request: Request) -> str:
        # X-Forwarded-For is whatever the client says unless a known number of proxies sits in front; an
        # attacker would send a new one with every guess. Behind a proxy, let the ASGI server rewrite
        # REMOTE_ADDR (daphne/uvicorn --proxy-headers) or set REST_FRAMEWORK["NUM_PROXIES"].
        if api_settings.NUM_PROXIES is not None:
            return str(super().get_ident(request))
        return str(request.META.get("REMOTE_ADDR") or "unknown")

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
