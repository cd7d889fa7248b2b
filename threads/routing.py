"""WebSocket routes of threads (included by aihub/routing.py)."""

from __future__ import annotations

from django.urls import URLPattern, path

from threads.consumers import TenantEventsConsumer, ThreadConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/v1/<slug:tenant>/threads/<uuid:thread_id>/", ThreadConsumer.as_asgi(), name="ws-thread"),
    path("ws/v1/<slug:tenant>/events/", TenantEventsConsumer.as_asgi(), name="ws-events"),
]
