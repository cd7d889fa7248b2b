"""Rate limits per credential and per client address, reported in ``X-RateLimit-*`` headers.

The address limit is checked before authentication (see ApiMixin.perform_authentication) so that guessing
tokens is rate limited too; the credential limit after it. Counters live in the default cache, which is
Redis when REDIS_URL is set, so every web process shares them.

Each limit is a sliding window counter kept with the cache's atomic ``incr`` (Redis ``INCR``): DRF's default
keeps a list of timestamps that it reads, changes and writes back, which lets concurrent requests from one
client overwrite each other's entries and slip past the limit. The window itself (``sliding_window_hit``) also
limits WebSocket frames per connection and connection attempts per address (threads.consumers).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from aihub.conf import aihub_settings


class Counters(Protocol):
    """Where window counts live: Django's cache (shared by every process), or ``LocalCounters`` (one object)."""

    def add(self, key: str, value: int, timeout: int) -> bool: ...
    def incr(self, key: str) -> int: ...
    def decr(self, key: str) -> int: ...
    def get(self, key: str) -> Any: ...


class LocalCounters:
    """Counters of one object (a WebSocket connection, say): no cache round trip, gone with their owner.

    Only the few newest keys are kept; a sliding window reads no more than the current and previous window.
    """

    KEEP = 4

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, key: str, value: int, timeout: int) -> bool:
        if key in self._counts:
            return False
        self._counts[key] = value
        while len(self._counts) > self.KEEP:
            del self._counts[next(iter(self._counts))]
        return True

    def incr(self, key: str) -> int:
        if key not in self._counts:
            raise ValueError(key)
        self._counts[key] += 1
        return self._counts[key]

    def decr(self, key: str) -> int:
        if key not in self._counts:
            raise ValueError(key)
        self._counts[key] -= 1
        return self._counts[key]

    def get(self, key: str) -> Any:
        return self._counts.get(key)


@dataclass(frozen=True)
class WindowHit:
    """One counted (or refused) hit of a sliding window."""

    allowed: bool
    current: int
    previous: int
    weight: float
    window_start: float
    retry_at: float | None


def sliding_window_hit(counters: Counters, key: str, *, limit: int, duration: int, now: float) -> WindowHit:
    """Count one hit against ``limit`` per ``duration`` seconds under ``key``; a refused hit is not counted.

    A sliding window counter: the previous window's count, weighted by how much of it still overlaps the last
    ``duration`` seconds, plus the current window's. No burst of twice the limit at a window edge.
    """
    window = int(now // duration)
    window_start = float(window * duration)
    current_key = f"{key}:{window}"
    current = _increment(counters, current_key, timeout=2 * duration + 5)
    previous = int(counters.get(f"{key}:{window - 1}") or 0)
    weight = 1.0 - (now - window_start) / duration
    allowed = previous * weight + current <= limit
    retry_at = None
    if not allowed:
        # A refused hit does not use up budget, so a client that waits for Retry-After gets in.
        with contextlib.suppress(ValueError):  # the window's key expired meanwhile: nothing to give back
            counters.decr(current_key)
        current -= 1
        if current < limit:
            retry_at = window_start + duration * (1.0 - (limit - current - 1) / previous)
        else:
            retry_at = window_start + duration + duration / limit
    return WindowHit(allowed, current, previous, weight, window_start, retry_at)


def _increment(counters: Counters, key: str, *, timeout: int) -> int:
    counters.add(key, 0, timeout)
    try:
        return int(counters.incr(key))
    except ValueError:  # expired between add and incr
        counters.add(key, 1, timeout)
        return 1


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
        hit = sliding_window_hit(self.cache, self.key, limit=limit, duration=duration, now=self.now)
        allowed, current, previous, weight = hit.allowed, hit.current, hit.previous, hit.weight
        window_start = hit.window_start
        self.retry_at = hit.retry_at
        if current:
            reset_at = window_start + 2 * duration
        elif previous:
            reset_at = window_start + duration
        else:
            reset_at = self.now
        remaining = max(0, math.floor(limit - (previous * weight + current)))
        self._report(request, limit=limit, remaining=remaining, reset_at=reset_at)
        return allowed

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
