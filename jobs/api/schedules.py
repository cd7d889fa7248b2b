"""Routes under /api/v1/{tenant}/schedules/: cron-scheduled agent runs. Thin: parse, call jobs.schedules, render.

Reading needs ``aihub.user.schedules``; creating, changing, deleting and running now need ``aihub.admin.schedules``.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.selectors import agent_get
from aihub.access.api.serializers import StrictSerializer
from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantScopedViewSet, caller
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer
from jobs import schedules
from jobs.api.serializers import JobSerializer
from jobs.models import Schedule, ThreadPolicy
from threads.selectors import thread_get

RESOURCE = schedules.SCHEDULES_RESOURCE
SCHEDULE_ID_PARAMETER = OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH, description="The schedule's id.")

SCHEDULE_EXAMPLE: dict[str, Any] = {
    "id": "5d6e7f80-4444-4b1c-9d2e-3f4a5b6c7d8e",
    "name": "Morning report",
    "agent": "support-bot",
    "cron": "0 7 * * 1-5",
    "timezone": "Europe/Berlin",
    "input": "Summarize yesterday's tickets.",
    "thread_policy": "new",
    "thread": None,
    "busy": "enqueue",
    "enabled": True,
    "created_by": "alice",
    "next_run_at": "2025-01-02T06:00:00Z",
    "last_run_at": "2025-01-01T06:00:00.012000Z",
    "last_job": "0f8e5a52-4a51-4b8e-9d53-5b2f0c6f3c11",
    "last_error": None,
    "created_at": "2024-12-20T10:00:00Z",
    "updated_at": "2025-01-01T06:00:00.012000Z",
}

BAD_REQUEST = {
    (400, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        ProblemSerializer,
        description="An invalid cron expression, an unknown time zone, a disabled agent or invalid input.",
    )
}


class ScheduleSerializer(serializers.ModelSerializer):
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="The user the jobs run as (checked at each firing)."
    )
    input = serializers.JSONField(read_only=True, help_text="The message content each firing sends.")
    last_error = serializers.JSONField(
        read_only=True, allow_null=True, help_text="Problem details when the last firing could not submit a job."
    )

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "agent",
            "cron",
            "timezone",
            "input",
            "thread_policy",
            "thread",
            "busy",
            "enabled",
            "created_by",
            "next_run_at",
            "last_run_at",
            "last_job",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ScheduleWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    agent = serializers.SlugField(help_text="The agent each firing runs (its slug).")
    cron = serializers.CharField(max_length=200, help_text="Five fields: minute hour day-of-month month day-of-week.")
    timezone = serializers.CharField(max_length=64, default="UTC", help_text="An IANA time zone, e.g. Europe/Berlin.")
    input = serializers.JSONField(help_text="The message content: a string or a list of content blocks.")
    thread_policy = serializers.ChoiceField(choices=ThreadPolicy.choices, default=ThreadPolicy.NEW)
    thread = serializers.UUIDField(required=False, allow_null=True, default=None, help_text="For `fixed`.")
    busy = serializers.ChoiceField(
        choices=list(schedules.BUSY_POLICIES), default="enqueue", help_text="When the fixed thread is still busy."
    )
    enabled = serializers.BooleanField(default=True)


class ScheduleUpdateSerializer(ScheduleWriteSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["schedules"])
class ScheduleViewSet(TenantScopedViewSet):
    """Cron-scheduled runs of an agent with fixed input; every firing is an ordinary job."""

    serializer_class = ScheduleSerializer
    model = Schedule

    def visible_queryset(self) -> Any:
        self.principal.require("user", RESOURCE)
        return schedules.schedule_list(principal=self.principal)

    def _fields(self, data: dict[str, Any]) -> dict[str, Any]:
        """Serializer names to service arguments, the agent and thread looked up as the caller sees them."""
        fields = dict(data)
        if "agent" in fields:
            fields["agent"] = agent_get(principal=self.principal, slug=fields["agent"])
        if fields.get("thread") is not None:
            fields["thread"] = thread_get(principal=self.principal, thread_id=fields["thread"])
        renames = {"timezone": "tz_name", "input": "content"}
        return {renames.get(key, key): value for key, value in fields.items()}

    @extend_schema(summary="List schedules", responses=ScheduleSerializer(many=True))
    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ScheduleSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a schedule",
        description="Needs `aihub.admin.schedules`. The jobs run as you; your access is checked at each firing.",
        request=ScheduleWriteSerializer,
        examples=[
            OpenApiExample(
                "Weekday mornings in Berlin",
                value={
                    "name": "Morning report",
                    "agent": "support-bot",
                    "cron": "0 7 * * 1-5",
                    "timezone": "Europe/Berlin",
                    "input": "Summarize yesterday's tickets.",
                },
                request_only=True,
            )
        ],
        responses={
            201: OpenApiResponse(
                ScheduleSerializer, examples=[OpenApiExample("A schedule", value=SCHEDULE_EXAMPLE, status_codes=[201])]
            ),
            **BAD_REQUEST,
        },
    )
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("admin", RESOURCE)
        data = ScheduleWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        schedule = schedules.schedule_create(created_by=caller(request), **self._fields(data.validated_data))
        return Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="One schedule",
        parameters=[SCHEDULE_ID_PARAMETER],
        responses=OpenApiResponse(ScheduleSerializer, examples=[OpenApiExample("A schedule", value=SCHEDULE_EXAMPLE)]),
    )
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(ScheduleSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a schedule",
        description="Needs `aihub.admin.schedules`. A new cron expression, time zone or enabled state recomputes "
        "`next_run_at`.",
        parameters=[SCHEDULE_ID_PARAMETER],
        request=ScheduleUpdateSerializer,
        examples=[OpenApiExample("Pause", value={"enabled": False}, request_only=True)],
        responses={200: ScheduleSerializer, **BAD_REQUEST},
    )
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        schedule = self.get_object()
        self.principal.require("admin", RESOURCE)
        data = ScheduleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        schedule = schedules.schedule_update(
            schedule=schedule, actor=caller(request), **self._fields(data.validated_data)
        )
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(summary="Delete a schedule", parameters=[SCHEDULE_ID_PARAMETER], responses={204: None})
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        schedule = self.get_object()
        self.principal.require("admin", RESOURCE)
        schedules.schedule_delete(schedule=schedule, actor=caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Fire a schedule now",
        description="Needs `aihub.admin.schedules`. Submits one job as the schedule's user, outside the cron "
        "ticks (`next_run_at` is unchanged). A firing that cannot submit is recorded in `last_error`.",
        parameters=[SCHEDULE_ID_PARAMETER],
        request=None,
        responses={
            200: OpenApiResponse(
                ScheduleSerializer,
                description="The schedule after the firing: `last_job` or `last_error`.",
                examples=[OpenApiExample("Fired", value=SCHEDULE_EXAMPLE)],
            )
        },
    )
    def run(self, request: Request, tenant: str, pk: str) -> Response:
        schedule = self.get_object()
        self.principal.require("admin", RESOURCE)
        schedules.schedule_fire(schedule=schedule)
        return Response(ScheduleSerializer(self.get_object()).data)

    @extend_schema(
        summary="The jobs a schedule submitted, newest first",
        parameters=[SCHEDULE_ID_PARAMETER],
        responses=JobSerializer(many=True),
    )
    def jobs(self, request: Request, tenant: str, pk: str) -> Response:
        schedule = self.get_object()
        page = self.paginate_queryset(schedules.schedule_job_list(schedule=schedule))
        return self.get_paginated_response(JobSerializer(page, many=True).data)
