"""The /jobs routes: submit in the background, list, status and result, cancel. Thin: parse, call, render."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents import selectors as agent_selectors
from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantScopedViewSet, caller
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer
from jobs import selectors, services
from jobs.api import serializers as s
from jobs.models import Job, JobStatus
from threads.selectors import thread_get

IDEMPOTENCY_KEY_MAX_LENGTH = 200

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Send the same key again (same user, same tenant) and get the first job back with 200, "
    f"without a second job being started. Up to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.",
)


def _conflict(description: str) -> dict[Any, Any]:
    return {(409, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=description)}


class JobFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False, help_text="Only jobs in this status.")
    agent = serializers.SlugField(required=False, help_text="Only jobs of this agent (slug).")
    thread = serializers.UUIDField(required=False, help_text="Only jobs on this thread.")


@extend_schema(parameters=[TENANT_PARAMETER], tags=["jobs"])
class JobViewSet(TenantScopedViewSet):
    """Jobs (agent runs) on threads the caller can see; with aihub.admin.jobs, every job of the tenant."""

    serializer_class = s.JobSerializer
    model = Job

    def visible_queryset(self) -> Any:
        return selectors.job_list(principal=self.principal)

    @extend_schema(
        summary="List jobs, newest first",
        parameters=[JobFilterSerializer],
        responses=s.JobSerializer(many=True),
    )
    def list(self, request: Request, tenant: str) -> Response:
        filters = JobFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = self.get_queryset()
        if "status" in filters.validated_data:
            jobs = jobs.filter(status=filters.validated_data["status"])
        if "agent" in filters.validated_data:
            jobs = jobs.filter(agent__slug=filters.validated_data["agent"])
        if "thread" in filters.validated_data:
            jobs = jobs.filter(thread_id=filters.validated_data["thread"])
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(s.JobSerializer(page, many=True).data)

    @extend_schema(summary="A job's status and result")
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.JobSerializer(self.get_object()).data)

    @extend_schema(
        summary="Submit a job in the background",
        description="Stores the message on the thread (a new one when `thread` is absent) and queues the job; "
        "poll `GET /jobs/{id}/` or watch the thread's events for the result.",
        request=s.JobSubmitSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            202: OpenApiResponse(
                s.JobSerializer,
                description="The job was queued.",
                examples=[OpenApiExample("A queued job", value=s.JOB_QUEUED_EXAMPLE, status_codes=[202])],
            ),
            200: OpenApiResponse(s.JobSerializer, description="This Idempotency-Key was used before: that job."),
            **_conflict("The agent is disabled, or the thread is busy and `busy` is `reject`."),
        },
    )
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("user", "jobs")
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            raise serializers.ValidationError(
                {"Idempotency-Key": f"Ensure this header has no more than {IDEMPOTENCY_KEY_MAX_LENGTH} characters."}
            )
        data = s.JobSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        agent = agent_selectors.agent_get(principal=self.principal, slug=body["agent"])
        thread = thread_get(principal=self.principal, thread_id=body["thread"]) if "thread" in body else None
        job, created = services.job_submit(
            agent=agent,
            user=caller(request),
            content=body["input"],
            thread=thread,
            busy=body["busy"],
            idempotency_key=key,
            additional_instructions=body["additional_instructions"],
            context=body["context"],
            expires_at=body.get("expires_at"),
        )
        location = reverse("job-detail", kwargs={"tenant": tenant, "pk": job.pk})
        return Response(
            s.JobSerializer(job).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
            headers={"Location": location},
        )

    @extend_schema(
        summary="Cancel a job",
        description="A job that has not started ends `cancelled` at once; a running job stops at its next step "
        "(`immediate`) or when its current turn ends (`after_turn`), keeping what was complete.",
        request=s.JobCancelSerializer,
        responses={
            202: OpenApiResponse(
                s.JobSerializer,
                description="Cancelled, or cancellation requested.",
                examples=[
                    OpenApiExample("A running job, asked to stop", value=s.JOB_CANCELLING_EXAMPLE, status_codes=[202])
                ],
            ),
            **_conflict("The job has already ended."),
        },
    )
    def cancel(self, request: Request, tenant: str, pk: str) -> Response:
        job = self.get_object()
        data = s.JobCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.job_cancel(job=job, mode=data.validated_data["mode"])
        return Response(s.JobSerializer(self.get_object()).data, status=status.HTTP_202_ACCEPTED)
