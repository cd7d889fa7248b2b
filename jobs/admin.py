"""Operators' view of jobs (read-only rows, filters, search by id, a cancel action that calls the service) and
the usage limits of roles."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from rest_framework.exceptions import APIException

from aihub.access.admin import ReadOnlyAdminMixin, ReadOnlyModelAdmin, ServiceModelAdmin
from jobs import dashboard, schedules, services, usage
from jobs.models import (
    Artifact,
    CancelMode,
    Job,
    JobPushConfig,
    PassthroughCall,
    Schedule,
    UsageLimit,
    WebhookDelivery,
)


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


class WebhookDeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Each attempt to deliver the job's webhook (jobs.webhooks), read-only."""

    model = WebhookDelivery
    fields = ("attempt", "event", "url", "succeeded", "response_status", "error", "next_attempt_at", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


class JobPushConfigInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Where an A2A client asked for the job's final state to be pushed (its webhook), read-only; the client's
    token is its own and stays out of the page."""

    model = JobPushConfig
    fields = ("name", "url", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Job)
class JobAdmin(ReadOnlyModelAdmin):
    inlines = (ArtifactInline, WebhookDeliveryInline, JobPushConfigInline)
    list_display = (
        "id",
        "status",
        "agent",
        "tenant",
        "thread",
        "attempts",
        "model",
        "total_tokens",
        "cost",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "tenant", "agent")
    list_select_related = ("agent", "tenant", "thread")
    search_fields = ("id",)
    search_help_text = "A job id, the id of its thread, or its trace id."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("cancel_jobs",)
    readonly_fields = [field.name for field in Job._meta.fields]

    @admin.display(description="tokens")
    def total_tokens(self, job: Job) -> int:
        return job.input_tokens + job.output_tokens

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("spend/", self.admin_site.admin_view(self.spend_view), name="jobs_job_spend"),
            path("spend/plotly.min.js", self.admin_site.admin_view(self.plotly_js), name="jobs_job_spend_plotly"),
        ]
        return own + super().get_urls()

    def spend_view(self, request: HttpRequest) -> HttpResponse:
        """Spend and tokens over time per tenant, user, agent and model, and the top spenders."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        query = request.GET.copy()
        query.setdefault("interval", "day")
        form = dashboard.SpendFilterForm(query)
        valid = form.is_valid()
        jobs = Job.objects.all()
        charts: list[dashboard.Chart] = []
        spenders: list[dict[str, Any]] = []
        if valid:
            start, end = form.period()
            interval = form.cleaned_data.get("interval") or "day"
            if form.cleaned_data.get("tenant") is not None:
                jobs = jobs.filter(tenant=form.cleaned_data["tenant"])
            charts = dashboard.spend_charts(jobs=jobs, start=start, end=end, interval=interval)
            spenders = dashboard.top_spenders(jobs=jobs, start=start, end=end)
        context = {
            **self.admin_site.each_context(request),
            "title": "Spend",
            "opts": self.model._meta,
            "form": form,
            "charts": charts,
            "figures": {chart.id: chart.figure for chart in charts},
            "spenders": spenders,
            "currency": settings.USAGE_CURRENCY,
        }
        return TemplateResponse(request, "admin/jobs/job/spend.html", context)

    def plotly_js(self, request: HttpRequest) -> FileResponse:
        # The plotly package's own build of plotly.js: no CDN, and the version pinned in requirements.txt.
        response = FileResponse(dashboard.PLOTLY_JS.open("rb"), content_type="text/javascript")
        response["Cache-Control"] = "private, max-age=86400"
        return response

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        # Ids are UUIDs (and a trace id's 32 hex digits read as one): anything else matches nothing, instead of
        # failing the query.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            wanted = uuid.UUID(term)
        except ValueError:
            return queryset.none(), False
        matches = queryset.filter(pk=wanted) | queryset.filter(thread_id=wanted) | queryset.filter(trace_id=wanted.hex)
        return matches, False

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


# --- Usage limits ---------------------------------------------------------------------------------------------


class UsageLimitForm(forms.ModelForm):
    class Meta:
        model = UsageLimit
        fields = ("role", "name", "target", "pattern", "unit", "amount", "period", "enabled")
        help_texts = {
            "pattern": "Agent slugs, or model ids <provider>/<model>: '>' everything, '*' one segment "
            "('openai/*'), '>' at the end the rest.",
        }

    def clean_pattern(self) -> str:
        try:
            return usage.validate_pattern(self.cleaned_data["pattern"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(UsageLimit)
class UsageLimitAdmin(ServiceModelAdmin):
    """Limits per role. A limit whose pattern matches nothing in its tenant is flagged: probably a typo."""

    form = UsageLimitForm
    list_display = ("name", "role", "tenant", "target", "pattern", "matches", "amount", "unit", "period", "enabled")
    list_filter = ("target", "unit", "period", "enabled", "role__tenant")
    search_fields = ("name", "pattern", "role__name", "role__tenant__slug")
    list_select_related = ("role__tenant",)

    @admin.display(description="tenant")
    def tenant(self, limit: UsageLimit) -> str:
        return limit.role.tenant.slug

    @admin.display(description="matches")
    def matches(self, limit: UsageLimit) -> str:
        return "yes" if usage.limit_matches_anything(limit) else "⚠ matches nothing"

    def save_model(self, request: HttpRequest, obj: UsageLimit, form: forms.ModelForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in UsageLimitForm.Meta.fields}
        saved = usage.usage_limit_update(limit=obj, **fields) if change else usage.usage_limit_create(**fields)
        obj.__dict__.update(saved.__dict__)
        if not usage.limit_matches_anything(saved):
            self.message_user(
                request,
                f"The pattern {saved.pattern!r} of limit {saved.name!r} matches no {saved.target} in tenant "
                f"{saved.role.tenant.slug} yet; check it for a typo.",
                messages.WARNING,
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyModelAdmin):
    """Webhook attempts across jobs: which receivers fail, and why."""

    list_display = ("job", "attempt", "event", "url", "succeeded", "response_status", "next_attempt_at", "created_at")
    list_filter = ("succeeded", "event", "tenant")
    list_select_related = ("job",)
    search_fields = ("=job__id", "url")
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "id",
        "tenant",
        "job",
        "event",
        "url",
        "attempt",
        "succeeded",
        "response_status",
        "error",
        "duration_ms",
        "next_attempt_at",
        "created_at",
    )


# --- Schedules --------------------------------------------------------------------------------------------------


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = (
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
        )
        help_texts = {
            "cron": "Five fields: minute hour day-of-month month day-of-week, e.g. '0 7 * * 1-5'.",
            "timezone": "An IANA time zone the cron expression is read in, e.g. Europe/Berlin.",
            "input": 'The message content: a JSON string ("Hello") or a list of content blocks.',
            "created_by": "The user the jobs run as; their access is checked at each firing.",
        }

    def clean_cron(self) -> str:
        try:
            return schedules.validate_cron(self.cleaned_data["cron"])
        except ValidationError as exc:
            raise forms.ValidationError(" ".join(exc.messages)) from exc

    def clean_timezone(self) -> str:
        try:
            schedules.validate_timezone(self.cleaned_data["timezone"])
        except ValidationError as exc:
            raise forms.ValidationError(" ".join(exc.messages)) from exc
        return str(self.cleaned_data["timezone"])


def _user(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


@admin.register(Schedule)
class ScheduleAdmin(ServiceModelAdmin):
    """Cron-scheduled agent runs; saving goes through the services, "run now" fires one job at once."""

    form = ScheduleForm
    list_display = ("name", "tenant", "agent", "cron", "timezone", "enabled", "next_run_at", "last_run_at", "failed")
    list_filter = ("enabled", "tenant")
    list_select_related = ("tenant", "agent")
    search_fields = ("name", "agent__slug", "tenant__slug")
    readonly_fields = ("next_run_at", "last_run_at", "last_job", "last_error")
    actions = ("run_now",)

    @admin.display(description="last firing failed", boolean=True)
    def failed(self, schedule: Schedule) -> bool:
        return schedule.last_error is not None

    def save_model(self, request: HttpRequest, obj: Schedule, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "agent": data["agent"],
            "name": data["name"],
            "cron": data["cron"],
            "tz_name": data["timezone"],
            "content": data["input"],
            "thread_policy": data["thread_policy"],
            "thread": data.get("thread"),
            "busy": data["busy"],
            "enabled": data["enabled"],
        }
        if change:
            saved = schedules.schedule_update(
                schedule=obj, actor=_user(request), created_by=data["created_by"], **fields
            )
        else:
            saved = schedules.schedule_create(created_by=data["created_by"], **fields)
        obj.__dict__.update(saved.__dict__)

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        schedules.schedule_delete(schedule=obj, actor=_user(request))

    def has_run_now_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_schedule")

    @admin.action(description="Run selected schedules now", permissions=["run_now"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        fired, failed = 0, []
        for schedule in queryset.select_related("tenant", "agent", "created_by", "thread"):
            if schedules.schedule_fire(schedule=schedule) is not None:
                fired += 1
            else:
                schedule.refresh_from_db(fields=["last_error"])
                failed.append(f"{schedule.name}: {(schedule.last_error or {}).get('detail', 'failed')}")
        if fired:
            self.message_user(request, f"Submitted {fired} job(s).", messages.SUCCESS)
        if failed:
            self.message_user(request, f"Not fired: {'; '.join(failed)}", messages.WARNING)


@admin.register(PassthroughCall)
class PassthroughCallAdmin(ReadOnlyModelAdmin):
    """Image, transcription and speech calls passed through to providers: written only by the front door."""

    list_display = ["kind", "model", "tenant", "created_by", "input_tokens", "output_tokens", "cost", "created_at"]
    list_filter = ["kind", "tenant"]
    list_select_related = ["tenant", "created_by"]
    search_fields = ["model", "created_by__username"]
    date_hierarchy = "created_at"
