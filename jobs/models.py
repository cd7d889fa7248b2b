"""Jobs: one agent invocation on a thread, from queued to a final state."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from agents.models import Agent
from aihub.access.models import Role, Tenant
from threads.models import Thread


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.REQUIRES_ACTION)
FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


class CancelMode(models.TextChoices):
    IMMEDIATE = "immediate"
    AFTER_TURN = "after_turn"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="jobs")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="jobs")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="jobs")
    agent_version = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    # {"message": <id of the message answered>, "content": [...], "additional_instructions": "", "context": {}}
    input = models.JSONField(default=dict)
    # {"message": <id of the final assistant message>, "content": [...]}
    output = models.JSONField(default=dict, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    # Usage accounting (jobs.usage): the model the agent version names, and the job's tokens and cost at the
    # catalogue's prices, as columns so reports aggregate them in SQL. Set when the job ends.
    model = models.CharField(max_length=300, blank=True, db_index=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    # Problem details (RFC 7807) when the job failed.
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=2)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.CharField(max_length=16, choices=CancelMode.choices, blank=True)
    # NULL, not '', for "no key": the partial unique constraint below only covers rows that have one.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # When the janitor purged the ended job's results (output and artifacts), JOBS_RESULT_RETENTION_SECONDS after
    # its expires_at; NULL while they are kept.
    results_purged_at = models.DateTimeField(null=True, blank=True)
    # Where the job's final state is POSTed, signed (jobs.webhooks); empty for none.
    webhook = models.CharField(max_length=2000, blank=True)
    # While the job is in requires_action, what it waits for: {"type": "tool_approval", "tool_call": {"id",
    # "name", "arguments"}, "requested_at"} or {"type": "input", "prompt", "requested_at"}; NULL otherwise.
    pending_action = models.JSONField(null=True, blank=True)
    # What the agent class saved to carry on after the answer ({"state": ...}, then "request" and "response"
    # once answered). Internal to the runner and the class; cleared when the job ends.
    resume_state = models.JSONField(null=True, blank=True)
    # The OpenTelemetry trace the job was submitted in (32 hex digits; aihub.tracing), which its task, agent run,
    # model and tool calls join; empty with tracing off.
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)
    # The schedule whose firing submitted this job (jobs.schedules); NULL for every other job.
    schedule = models.ForeignKey("jobs.Schedule", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "created_by", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_unique_idempotency_key",
            )
        ]
        indexes = [
            models.Index(fields=["thread", "status"]),
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["tenant", "created_at"]),
            # The usage records (GET .../usage/jobs/): a tenant's ended jobs by when they ended.
            models.Index(fields=["tenant", "finished_at"], name="job_tenant_finished_at"),
        ]

    # Not stored: set by job_submit on the job it just admitted, the usage limits (jobs.usage.LimitState) that
    # job brought near their end, for the response's X-Usage-Warning header.
    usage_warnings: tuple[Any, ...] = ()
    # Not stored: set by job_submit on the job it just created, the id of its first event (job.queued), so the
    # answer can point at where the job's events start without looking for it.
    first_event_id: int | None = None

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class ArtifactKind(models.TextChoices):
    FILE = "file"
    CITATION = "citation"
    TASK_LIST = "task_list"
    OTHER = "other"


def artifact_upload_to(artifact: Artifact, filename: str) -> str:
    # Named by the artifact's id, never by what the agent called it: agent-chosen names stay out of paths.
    return f"artifacts/{artifact.job_id}/{artifact.id}-{uuid.uuid4().hex[:8]}"


class Artifact(models.Model):
    """Something a job published (a file, citations, a task list); the agent updates it by name."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=16, choices=ArtifactKind.choices, default=ArtifactKind.OTHER)
    name = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to=artifact_upload_to, max_length=300, blank=True)
    media_type = models.CharField(max_length=200, blank=True)
    # Bytes of the file; 0 without one.
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="artifact_unique_name_per_job")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} of job {self.job_id}"


# --- Usage limits ---------------------------------------------------------------------------------------------


class LimitTarget(models.TextChoices):
    AGENTS = "agents", "Agents (by slug)"
    MODELS = "models", "Models (by <provider>/<model>)"


class LimitUnit(models.TextChoices):
    TOKENS = "tokens"
    COST = "cost"


class LimitPeriod(models.TextChoices):
    HOUR = "1h", "1 hour"
    DAY = "1d", "1 day"
    WEEK = "7d", "7 days (a calendar week from Monday)"
    MONTH = "1mo", "1 month"


class UsageLimit(models.Model):
    """A limit of a role: each member with the role may use at most ``amount`` per period on what matches.

    ``pattern`` matches agent slugs or model ids in the style of permission rules: segments separated by ``/``,
    ``*`` one segment, ``>`` the rest (``>`` alone: everything; ``openai/*``: every model of provider openai).
    Periods are calendar windows in UTC (the hour, the day, the week from Monday, the month).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="usage_limits")
    name = models.SlugField(max_length=63)
    target = models.CharField(max_length=16, choices=LimitTarget.choices, default=LimitTarget.AGENTS)
    pattern = models.CharField(max_length=300, default=">")
    unit = models.CharField(max_length=16, choices=LimitUnit.choices, default=LimitUnit.TOKENS)
    amount = models.DecimalField(max_digits=20, decimal_places=6, help_text="Tokens, or cost in USAGE_CURRENCY.")
    period = models.CharField(max_length=4, choices=LimitPeriod.choices, default=LimitPeriod.DAY)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["role", "name"]
        constraints = [models.UniqueConstraint(fields=["role", "name"], name="usage_limit_unique_name_per_role")]

    def __str__(self) -> str:
        return f"{self.name} ({self.amount} {self.unit} per {self.period} on {self.target} {self.pattern})"


class UsageCounter(models.Model):
    """One member's use of one limit in one window: settled usage plus what running jobs have reserved.

    The row is what admission locks (SELECT ... FOR UPDATE), so two jobs cannot both take the last of a limit.
    """

    id = models.BigAutoField(primary_key=True)
    limit = models.ForeignKey(UsageLimit, on_delete=models.CASCADE, related_name="counters")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    used = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    reserved = models.DecimalField(max_digits=24, decimal_places=10, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["limit", "user", "window_start"], name="usage_counter_unique_window")
        ]

    def __str__(self) -> str:
        return f"{self.limit_id} user {self.user_id} from {self.window_start:%Y-%m-%d %H:%M}"


class UsageReservation(models.Model):
    """What a job took from a counter when it was admitted; settled (and deleted) when the job ends."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="usage_reservations")
    counter = models.ForeignKey(UsageCounter, on_delete=models.CASCADE, related_name="reservations")
    amount = models.DecimalField(max_digits=24, decimal_places=10)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "counter"], name="usage_reservation_unique")]

    def __str__(self) -> str:
        return f"{self.amount} of counter {self.counter_id} for job {self.job_id}"


class WebhookDelivery(models.Model):
    """One attempt to POST a job's final state to its webhook: what came back, and when the next try is due."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=32)
    url = models.CharField(max_length=2000)
    attempt = models.PositiveSmallIntegerField()
    succeeded = models.BooleanField(default=False)
    # The receiver's HTTP status; NULL when no answer came (refused address, timeout, connection error).
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # When the next attempt is due; NULL once delivered or given up.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "attempt"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["job", "attempt"], name="webhook_delivery_unique_attempt")]

    def __str__(self) -> str:
        return f"webhook attempt {self.attempt} of job {self.job_id}"


class JobPushConfig(models.Model):
    """Where a job's final state is pushed for a client that asked for it (an A2A push notification config): the
    job's ``webhook`` is this URL, so it goes out through jobs.webhooks (signed, retried, allowlisted), with the
    client's ``token`` echoed back so the receiver knows the notification is for it. One per job."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="push_config")
    # The client's name for the config (A2A's config id); the job's id when the client gave none.
    name = models.CharField(max_length=200)
    url = models.CharField(max_length=2000)
    # The client's own value, not a credential of aihub's: sent back with every notification.
    token = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"push config {self.name} of job {self.job_id}"


class ThreadPolicy(models.TextChoices):
    NEW = "new", "A new thread per firing"
    FIXED = "fixed", "One fixed thread"


class Schedule(models.Model):
    """An agent run with fixed input on a cron schedule (jobs.schedules); each firing is an ordinary job.

    The jobs run as ``created_by``, whose permissions are checked at each firing. ``next_run_at`` is the claim
    token: a firing moves it forward with a conditional update, so one tick fires once however many beats run.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="schedules")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200)
    # Five fields (minute hour day-of-month month day-of-week), read in ``timezone``.
    cron = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    # The message content each firing sends (a string or content blocks, as on POST jobs/).
    input = models.JSONField()
    thread_policy = models.CharField(max_length=8, choices=ThreadPolicy.choices, default=ThreadPolicy.NEW)
    thread = models.ForeignKey(Thread, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # What a firing on a fixed thread that is still busy does (jobs.services.BusyPolicy).
    busy = models.CharField(max_length=16, default="enqueue")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Problem details (RFC 7807) of the last firing when it could not submit a job; NULL when it did.
    last_error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="schedule_unique_name")]
        indexes = [models.Index(fields=["enabled", "next_run_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"


class PassthroughCall(models.Model):
    """One call passed through to a provider model without an agent (images, transcriptions, speech).

    It is accounted like a job: tokens from the provider's usage, priced at the catalogue's prices, counted in
    usage reports and against the member's limits on models.
    """

    class Kind(models.TextChoices):
        IMAGES = "images", "Image generation"
        TRANSCRIPTIONS = "transcriptions", "Audio transcription"
        SPEECH = "speech", "Speech synthesis"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="passthrough_calls")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model = models.CharField(max_length=300, db_index=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.model} at {self.created_at:%Y-%m-%d %H:%M}"
