"""Routes under /api/v1/{tenant}/jobs/ (``cancel`` without a trailing slash, as in the URL map)."""

from __future__ import annotations

from django.urls import path

from jobs.api.views import JobViewSet

tenant_urlpatterns = [
    path("jobs/", JobViewSet.as_view({"get": "list", "post": "create"}), name="job-list"),
    path("jobs/<uuid:pk>/", JobViewSet.as_view({"get": "retrieve"}), name="job-detail"),
    path("jobs/<uuid:pk>/cancel", JobViewSet.as_view({"post": "cancel"}), name="job-cancel"),
    path("jobs/<uuid:pk>/artifacts", JobViewSet.as_view({"get": "artifacts"}), name="job-artifact-list"),
    path(
        "jobs/<uuid:pk>/artifacts/<uuid:artifact_id>/content",
        JobViewSet.as_view({"get": "artifact_content"}),
        name="job-artifact-content",
    ),
    path("jobs/<uuid:pk>/respond", JobViewSet.as_view({"post": "respond"}), name="job-respond"),
]
