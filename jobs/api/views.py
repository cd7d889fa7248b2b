"""The /jobs routes: submit in the background, list, status and result, cancel. Thin: parse, call, render."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

from agents import selectors as agent_selectors
from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantScopedViewSet, caller
from aihub.api.pagination import EnvelopePagination, cursor_pagination
from aihub.api.problems import PROBLEM_CONTENT_TYPE, Conflict
from aihub.api.schema import ProblemSerializer
from jobs import selectors, services
from jobs.api import serializers as s
from jobs.api import submission
from jobs.models import Job, JobStatus
from threads.selectors import thread_get

ARTIFACT_ID_PARAMETER = OpenApiParameter(
    "artifact_id", uuid.UUID, OpenApiParameter.PATH, description="The artifact's id."
)


JOB_PAGES = cursor_pagination("-created_at", "id")


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

    @property
    def pagination_class(self) -> type[BasePagination]:  # type: ignore[override]
        # The job list grows without bound and pages by cursor too; a job's artifacts are a handful.
        return JOB_PAGES if self.action == "list" else EnvelopePagination

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

    @extend_schema(
        summary="A job's status and result",
        responses=OpenApiResponse(
            s.JobSerializer,
            examples=[
                OpenApiExample("A finished job", value=s.JOB_DETAIL_EXAMPLE),
                OpenApiExample("A job waiting for approval of a tool call", value=s.JOB_REQUIRES_ACTION_EXAMPLE),
            ],
        ),
    )
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.JobSerializer(self.get_object()).data)

    @extend_schema(
        summary="Submit a job in the background",
        description="Stores the message on the thread (a new one when `thread` is absent) and queues the job; "
        "poll `GET /jobs/{id}/` or watch the thread's events for the result.",
        request=s.JobSubmitSerializer,
        parameters=[submission.IDEMPOTENCY_KEY_PARAMETER],
        responses={
            202: OpenApiResponse(
                s.JobSerializer,
                description="The job was queued.",
                examples=[OpenApiExample("A queued job", value=s.JOB_QUEUED_EXAMPLE, status_codes=[202])],
            ),
            200: OpenApiResponse(
                s.JobSerializer, description=f"{submission.RETRIED_DESCRIPTION} Also a job that already ended."
            ),
            **submission.SUBMIT_CONFLICT_RESPONSE,
        },
    )
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("user", "jobs")
        key = submission.idempotency_key(request)
        data = s.JobSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        agent = agent_selectors.agent_get(principal=self.principal, slug=body["agent"])
        thread = thread_get(principal=self.principal, thread_id=body["thread"]) if body["thread"] else None
        job, created = submission.submit_message(
            body, agent=agent, thread=thread, user=caller(request), idempotency_key=key, principal=self.principal
        )
        location = reverse("job-detail", kwargs={"tenant": tenant, "pk": job.pk})
        return submission.submitted_response(
            job, s.JobSerializer(job).data, created=created, headers={"Location": location}
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

    @extend_schema(
        summary="Answer a job that waits for a person",
        description="A job in `requires_action` waits for the answer to its `pending_action`: approve, reject or "
        "tool_output for a `tool_approval` (a tool that requires approval, which the agent never runs on the "
        "model's say-so), text for an `input` request. The same job is queued again and carries on from where it "
        "paused. Allowed to the job's creator, and to callers with aihub.admin.jobs. An action that does not fit "
        "the pending request is a 400.",
        request=s.JobRespondSerializer,
        responses={
            202: OpenApiResponse(
                s.JobSerializer,
                description="The answer was recorded and the job queued to resume.",
                examples=[OpenApiExample("A resumed job", value=s.JOB_RESUMED_EXAMPLE, status_codes=[202])],
            ),
            (403, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer, description="Only the job's creator (or aihub.admin.jobs) may answer."
            ),
            **_conflict("The job is not waiting for a response (not yet, any more, or it expired)."),
        },
    )
    def respond(self, request: Request, tenant: str, pk: str) -> Response:
        job = self.get_object()
        user = caller(request)
        if job.created_by_id != user.pk and not self.principal.can("admin", "jobs"):
            raise PermissionDenied("Only the job's creator, or a jobs admin, may answer it.")
        data = s.JobRespondSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.job_respond(job=job, user=user, response=dict(data.validated_data))
        return Response(s.JobSerializer(self.get_object()).data, status=status.HTTP_202_ACCEPTED)

    # --- State and report (as AI-Q exposes jobs) ----------------------------------------------------------------

    @extend_schema(
        summary="A job's current UI state: status, step, progress, last event id, output so far",
        description="For a client that polls instead of streaming: where the job stands now. `last_event_id` is "
        "where to stream on from (`Last-Event-ID` on `jobs/{id}/stream` or the thread's stream). Seen by whoever "
        "may see the job.",
        responses=OpenApiResponse(
            s.JobStateSerializer,
            examples=[
                OpenApiExample("A job writing its answer", value=s.JOB_STATE_EXAMPLE),
                OpenApiExample("A finished job", value=s.JOB_STATE_FINISHED_EXAMPLE),
            ],
        ),
    )
    def state(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.JobStateSerializer(selectors.job_state(job=self.get_object())).data)

    @extend_schema(
        summary="An ended job's final report: output, citations, artifacts, usage, cost, timings",
        description="Once the job has ended (succeeded, failed, cancelled or expired); a job still under way is a "
        "409 (poll `jobs/{id}/state`, or stream its events, until it ends). Seen by whoever may see the job.",
        responses={
            200: OpenApiResponse(
                s.JobReportSerializer, examples=[OpenApiExample("A finished job", value=s.JOB_REPORT_EXAMPLE)]
            ),
            **_conflict("The job has not ended yet."),
        },
    )
    def report(self, request: Request, tenant: str, pk: str) -> Response:
        job = self.get_object()
        if not job.is_final:
            raise Conflict(f"The job is {job.status}: its report is ready once it ends.")
        return Response(s.JobReportSerializer(selectors.job_report(job=job)).data)

    # --- Artifacts ----------------------------------------------------------------------------------------------

    @extend_schema(
        summary="What the job published (files, citations, task lists), oldest first",
        description="The job's artifacts as they stand now; each change also came as an `artifact.updated` event. "
        "Seen by whoever may see the job.",
        responses=s.ArtifactSerializer(many=True),
    )
    def artifacts(self, request: Request, tenant: str, pk: str) -> Response:
        page = self.paginate_queryset(selectors.artifact_list(job=self.get_object()))
        return self.get_paginated_response(s.ArtifactSerializer(page, many=True).data)

    @extend_schema(
        summary="Download an artifact's file",
        description="The file an agent published, as an attachment with the artifact's media type (the `url` of "
        "the artifact and of its `artifact.updated` event). Seen by whoever may see the job.",
        parameters=[ARTIFACT_ID_PARAMETER],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The file, with the artifact's media type, as an attachment."
            ),
            (404, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer, description="No such job or artifact, or the artifact has no file."
            ),
        },
    )
    def artifact_content(self, request: Request, tenant: str, pk: str, artifact_id: str) -> FileResponse:
        artifact = selectors.artifact_get(job=self.get_object(), artifact_id=artifact_id)
        if not artifact.file:
            raise Http404("This artifact has no file.")
        # Always an attachment, never rendered inline: the bytes are whatever an agent produced.
        response = FileResponse(artifact.file.open("rb"), as_attachment=True, filename=_download_name(artifact.name))
        response["Content-Type"] = artifact.media_type or "application/octet-stream"
        return response


def _download_name(name: str) -> str:
    # Path separators and control characters have no place in a file name the browser will save.
    return re.sub(r"[\x00-\x1f\x7f/\\]", "_", name).strip(". ") or "artifact"
