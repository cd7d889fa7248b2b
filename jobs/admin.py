"""Operators' view of jobs: read-only rows, filters, search by id, and a cancel action that calls the service."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.exceptions import APIException

from aihub.access.admin import ReadOnlyAdminMixin, ReadOnlyModelAdmin
from jobs import services
from jobs.models import Artifact, CancelMode, Job


class ArtifactInline(ReadOnlyAdminMixin, admin.TabularInline):
    """What the job published, read-only: artifacts are written by the job's runner alone."""

    model = Artifact
    fields = ("name", "kind", "media_type", "size", "stored_file", "data", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="file")
    def stored_file(self, artifact: Artifact) -> str:
        # The path in storage, not a link: media is not served; the API's content route is the download.
        return artifact.file.name if artifact.file else "-"


@admin.register(Job)
class JobAdmin(ReadOnlyModelAdmin):
    inlines = (ArtifactInline,)
    list_display = ("id", "status", "agent", "tenant", "thread", "attempts", "created_at", "finished_at")
    list_filter = ("status", "tenant", "agent")
    list_select_related = ("agent", "tenant", "thread")
    search_fields = ("id",)
    search_help_text = "A job id, or the id of its thread."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("cancel_jobs",)
    readonly_fields = [field.name for field in Job._meta.fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        # Ids are UUIDs: anything else matches nothing, instead of failing the query.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            wanted = uuid.UUID(term)
        except ValueError:
            return queryset.none(), False
        return queryset.filter(pk=wanted) | queryset.filter(thread_id=wanted), False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled, requested, refused = 0, 0, []
        for job in queryset:
            try:
                after = services.job_cancel(job=job, mode=CancelMode.IMMEDIATE)
            except APIException as exc:  # Conflict: the job has already ended
                refused.append(f"{job.id}: {exc.detail}")
                continue
            if after.is_final:
                cancelled += 1
            else:
                requested += 1
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} job(s).", messages.SUCCESS)
        if requested:
            self.message_user(
                request, f"Asked {requested} running job(s) to stop at their next step.", messages.SUCCESS
            )
        if refused:
            self.message_user(request, f"Not cancelled: {'; '.join(refused)}", messages.WARNING)
