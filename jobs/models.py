"""Jobs: one agent invocation on a thread, from queued to a final state."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from agents.models import Agent
from aihub.access.models import Tenant
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
    # While the job is in requires_action, what it waits for: {"type": "tool_approval", "tool_call": {"id",
    # "name", "arguments"}, "requested_at"} or {"type": "input", "prompt", "requested_at"}; NULL otherwise.
    pending_action = models.JSONField(null=True, blank=True)
    # What the agent class saved to carry on after the answer ({"state": ...}, then "request" and "response"
    # once answered). Internal to the runner and the class; cleared when the job ends.
    resume_state = models.JSONField(null=True, blank=True)

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
        ]

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
