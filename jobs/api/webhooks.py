"""``GET /api/v1/{tenant}/jobs/{id}/webhook-deliveries``: the attempts to deliver a job's webhook. Seen by whoever
may see the job."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantScopedViewSet
from jobs import selectors
from jobs.models import WebhookDelivery


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A retried delivery",
            value={
                "id": "0b6f8a4e-4d1c-4f7e-9a57-1f0f3a2c9b11",
                "event": "job.succeeded",
                "url": "https://hooks.example.com/aihub",
                "attempt": 1,
                "succeeded": False,
                "response_status": 503,
                "error": "The receiver answered HTTP 503.",
                "duration_ms": 41,
                "next_attempt_at": "2025-01-01T12:00:20Z",
                "created_at": "2025-01-01T12:00:10Z",
            },
            response_only=True,
        )
    ]
)
class WebhookDeliverySerializer(serializers.ModelSerializer):
    response_status = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The receiver's HTTP status; null when no answer came."
    )
    next_attempt_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the next attempt is due; null once delivered or given up."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "url",
            "attempt",
            "succeeded",
            "response_status",
            "error",
            "duration_ms",
            "next_attempt_at",
            "created_at",
        ]
        read_only_fields = fields


@extend_schema(
    parameters=[
        TENANT_PARAMETER,
        OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH, description="The job's id."),
    ],
    tags=["jobs"],
)
class JobWebhookDeliveryViewSet(TenantScopedViewSet):
    serializer_class = WebhookDeliverySerializer
    model = WebhookDelivery

    def visible_queryset(self) -> Any:
        return selectors.job_list(principal=self.principal)

    @extend_schema(
        summary="The attempts to deliver the job's webhook, oldest first",
        description="One entry per attempt: the receiver's status or the error, and when the next attempt is due.",
        responses=WebhookDeliverySerializer(many=True),
    )
    def list(self, request: Request, tenant: str, pk: str) -> Response:
        job = selectors.job_get(principal=self.principal, job_id=pk)
        page = self.paginate_queryset(selectors.webhook_delivery_list(job=job))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
