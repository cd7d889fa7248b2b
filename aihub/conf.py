"""aihub's own namespaced settings: ``settings.AIHUB`` over the defaults below (the DRF / DOT pattern)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    "OIDC_ISSUERS": [],
    "OIDC_HTTP_TIMEOUT_SECONDS": 5.0,
    "OIDC_CACHE_SECONDS": 3600,
    "OIDC_FAILURE_BACKOFF_SECONDS": 10,
    "OIDC_LEEWAY_SECONDS": 30,
    "TOKEN_LAST_USED_RESOLUTION_SECONDS": 60,
    "THROTTLE_RATES": {"token": "1200/minute", "ip": "3000/minute"},
    "PAGE_SIZE": 50,
    "MAX_PAGE_SIZE": 200,
    "PROBLEM_PATH_PREFIXES": ["/api/"],
    "READINESS_TIMEOUT_SECONDS": 2.0,
    # Live streams (threads.consumers, threads.sse).
    "WS_AUTH_TIMEOUT_SECONDS": 5.0,
    "WS_MAX_FRAME_BYTES": 64 * 1024,
    "SSE_KEEPALIVE_SECONDS": 15.0,
    "STREAM_POLL_SECONDS": 5.0,
}


class AihubSettings:
    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown aihub setting: {name}")
        if name not in self._cache:
            self._cache[name] = getattr(settings, "AIHUB", {}).get(name, DEFAULTS[name])
        return self._cache[name]

    def reload(self) -> None:
        self._cache.clear()


aihub_settings = AihubSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "AIHUB":
        aihub_settings.reload()


setting_changed.connect(_reload)
