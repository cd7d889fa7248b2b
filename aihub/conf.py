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
    "MAX_PAGE_SIZE": 1000,
    "PROBLEM_PATH_PREFIXES": ["/api/"],
    # How deeply a JSON body, WebSocket frame or JSON form field may nest (aihub.api.parsers); deeper is a 400.
    "JSON_MAX_DEPTH": 64,
    "READINESS_TIMEOUT_SECONDS": 2.0,
    # What a 503 for an unavailable database, Redis or broker (aihub.unavailable) tells the client to wait.
    "UNAVAILABLE_RETRY_AFTER_SECONDS": 2,
    # Unanswered HTTP requests a server process holds before it answers new ones 503 (aihub.admission); 0: no limit.
    "MAX_PENDING_REQUESTS": 256,
    # Live streams (threads.consumers, threads.sse).
    "WS_AUTH_TIMEOUT_SECONDS": 5.0,
    "WS_MAX_FRAME_BYTES": 64 * 1024,
    "SSE_KEEPALIVE_SECONDS": 15.0,
    "STREAM_POLL_SECONDS": 5.0,
    # WebSocket rate limits ("N/second|minute|hour"; None turns one off): frames a connection may send, and
    # connection attempts per client address (counted in the shared cache, so across every server process).
    "WS_FRAME_RATE": "120/minute",
    "WS_CONNECT_RATE": "120/minute",
    # Outbound requests (aihub.outbound): file_urls, webhooks. Prefixes such as "https://files.example.com/public/"
    # or "file:///srv/shared/"; nothing is fetched from anywhere else.
    "FILE_URL_ALLOWLIST": [],
    # Hosts resolving to private, loopback, link-local or multicast addresses are refused unless this is on.
    "OUTBOUND_ALLOW_PRIVATE_NETWORKS": False,
    "OUTBOUND_TIMEOUT_SECONDS": 10.0,
    "OUTBOUND_MAX_REDIRECTS": 3,
    # Files (threads.File): uploads, attachments, fetched file_urls.
    "FILE_MAX_BYTES": 10 * 1024 * 1024,
    "FILE_MEDIA_TYPES": [
        "text/plain",
        "text/markdown",
        "text/html",
        "text/csv",
        "application/json",
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
    ],
    "ATTACHMENTS_MAX": 10,
    # The most characters of one document's extracted text a model is given with a message.
    "ATTACHMENT_TEXT_MAX_CHARS": 20_000,
    # Webhooks of jobs (jobs.webhooks): where they may go (URL prefixes), the HMAC key they are signed with
    # (no key: jobs cannot ask for webhooks), and the retries.
    # Per-request model credentials (client_config): URL prefixes its base_url must start with; empty: none.
    "CLIENT_CONFIG_URL_ALLOWLIST": [],
    "WEBHOOK_URL_ALLOWLIST": [],
    "WEBHOOK_SECRET": "",
    "WEBHOOK_MAX_ATTEMPTS": 6,
    "WEBHOOK_RETRY_BASE_SECONDS": 10.0,
    "WEBHOOK_RETRY_MAX_SECONDS": 3600.0,
    # Dotted paths of callables (job) -> (extra body fields, extra headers) or None, for doors that put their own
    # protocol's view of a job into its webhook (aihub.interop.a2a: the A2A task and the client's token).
    "WEBHOOK_EXTENSIONS": [],
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
