"""Threads, their members, messages and the event log.

Agents and jobs live on higher floors (DESIGN.md), so they are referenced here by id, not by foreign key.
Writes go through threads.services; reads through threads.selectors.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from aihub.access.models import Tenant


class Thread(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="threads")
    title = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    state = models.JSONField(default=dict, blank=True)
    # A stateless turn's thread (a message that brought its own chat_history): hidden from every list and lookup,
    # and its messages and events purged by the janitor JOBS_STATELESS_RETENTION_SECONDS after its job ended.
    ephemeral = models.BooleanField(default=False, editable=False)
    # The last sequence number handed out to this thread's events; see services.events_append.
    last_sequence = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return self.title or str(self.id)


class ThreadMember(models.Model):
    """A user or an agent taking part in a thread."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="thread_memberships"
    )
    agent_id = models.UUIDField(null=True, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["added_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, agent_id__isnull=True)
                | models.Q(user__isnull=True, agent_id__isnull=False),
                name="thread_member_is_user_or_agent",
            ),
            models.UniqueConstraint(fields=["thread", "user"], name="thread_member_unique_user"),
            models.UniqueConstraint(fields=["thread", "agent_id"], name="thread_member_unique_agent"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id or self.agent_id} in {self.thread_id}"


class MessageRole(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    # A list of content blocks (threads.content): text, image, file, tool_call, tool_result, citation.
    content = models.JSONField(default=list)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    agent_id = models.UUIDField(null=True, blank=True)
    job_id = models.UUIDField(null=True, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["thread", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role} message {self.id}"


class Event(models.Model):
    """One entry of a thread's event log; ``sequence`` is gap-free and unique per thread."""

    id = models.BigAutoField(primary_key=True)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="events")
    sequence = models.BigIntegerField()
    type = models.CharField(max_length=64)
    job_id = models.UUIDField(null=True, blank=True)
    agent_id = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["thread", "sequence"]
        constraints = [models.UniqueConstraint(fields=["thread", "sequence"], name="event_unique_sequence")]
        indexes = [models.Index(fields=["job_id", "sequence"])]

    def __str__(self) -> str:
        return f"{self.thread_id}#{self.sequence} {self.type}"


def file_upload_to(file: File, filename: str) -> str:
    # Under the tenant and named by id: the name a client chose never becomes part of a path.
    return f"files/{file.tenant_id}/{file.id}"


class File(models.Model):
    """A file a user uploaded (or a ``file_urls`` entry fetched for them), attached to messages by id.

    ``text`` is what aihub.extraction read from a document, once, at upload; None for images.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="files")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=255)
    # Sniffed from the bytes (aihub.extraction), not taken from the client.
    media_type = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content = models.FileField(upload_to=file_upload_to, max_length=300)
    text = models.TextField(null=True, blank=True)  # noqa: DJ001 — None (an image) is not "" (a blank document)
    # Where a file given as a file_urls entry was fetched from; empty for uploads.
    source_url = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["tenant", "uploaded_by", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.media_type})"


class Checkpoint(models.Model):
    """The thread as one finished turn left it, to look back at and fork from (``threads.services.thread_fork``).

    Written by the job runner's end-of-turn transaction as one INSERT ... SELECT (``checkpoint_record``): it
    copies the state and the head of the event log from the thread's row, and names the last message, so the
    messages of a checkpoint are those up to and including that one (the thread's message order), not a copy.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="checkpoints")
    job_id = models.UUIDField(null=True, blank=True)
    # The agent answering the thread's next message: the latest handoff's target, else the turn's agent.
    agent_id = models.UUIDField(null=True, blank=True)
    message_id = models.UUIDField(null=True, blank=True)
    event_sequence = models.BigIntegerField()
    state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["thread", "event_sequence"]
        indexes = [models.Index(fields=["thread", "event_sequence"], name="checkpoint_thread_sequence")]

    def __str__(self) -> str:
        return f"{self.thread_id}@{self.event_sequence}"
