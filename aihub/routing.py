"""WebSocket routes of every app, collected for the ASGI router (apps add theirs here)."""

from __future__ import annotations

from django.urls import URLPattern

from threads.routing import websocket_urlpatterns as threads_websocket_urls

websocket_urlpatterns: list[URLPattern] = [*threads_websocket_urls]
