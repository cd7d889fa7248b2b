"""SSE routes under /api/v1/{tenant}/ (kept apart from threads/api/urls.py; both are included there)."""

from __future__ import annotations

from django.urls import URLPattern, path

from threads.sse import JobStreamView, ThreadStreamView

tenant_urlpatterns: list[URLPattern] = [
    path("threads/<uuid:pk>/stream", ThreadStreamView.as_view(), name="thread-stream"),
    path("jobs/<uuid:pk>/stream", JobStreamView.as_view(), name="job-stream"),
]
