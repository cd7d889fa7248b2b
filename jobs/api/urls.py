"""Routes under /api/v1/{tenant}/jobs/ (``cancel`` without a trailing slash, as in the URL map)."""

from __future__ import annotations

from django.urls import path

from jobs.api.schedules import ScheduleViewSet
from jobs.api.usage import PassthroughCallViewSet, UsageRecordViewSet, UsageView
from jobs.api.views import JobViewSet
from jobs.api.webhooks import JobWebhookDeliveryViewSet

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
    path("jobs/<uuid:pk>/state", JobViewSet.as_view({"get": "state"}), name="job-state"),
    path("jobs/<uuid:pk>/report", JobViewSet.as_view({"get": "report"}), name="job-report"),
    path(
        "jobs/<uuid:pk>/webhook-deliveries",
        JobWebhookDeliveryViewSet.as_view({"get": "list"}),
        name="job-webhook-deliveries",
    ),
    path("usage", UsageView.as_view(), name="usage"),
    path("usage/jobs/", UsageRecordViewSet.as_view({"get": "list"}), name="usage-job-list"),
    path("usage/calls/", PassthroughCallViewSet.as_view({"get": "list"}), name="usage-call-list"),
    path("schedules/", ScheduleViewSet.as_view({"get": "list", "post": "create"}), name="schedule-list"),
    path(
        "schedules/<uuid:pk>/",
        ScheduleViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="schedule-detail",
    ),
    path("schedules/<uuid:pk>/run", ScheduleViewSet.as_view({"post": "run"}), name="schedule-run"),
    path("schedules/<uuid:pk>/jobs", ScheduleViewSet.as_view({"get": "jobs"}), name="schedule-jobs"),
]
