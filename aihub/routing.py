"""WebSocket routes of every app, collected for the ASGI router (apps add theirs here)."""

from __future__ import annotations

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
