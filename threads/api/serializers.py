"""Request and response bodies of the threads API. Requests are strict: unknown fields are 400s."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from aihub.access.api.serializers import StrictSerializer
from aihub.api.pagination import CURSOR_DESCRIPTION
from jobs.api.serializers import JOB_EXAMPLE, QUEUED_JOB_EXAMPLE, THREAD_EXAMPLE_ID, JobSummarySerializer
from jobs.api.submission import (
    CONTENT_FIELD_SCHEMA,
    ExpirySerializer,
    JsonObjectField,
    MessageSubmitSerializer,
    agent_field,
)
from threads.content import ContentBlock
from threads.models import Message, MessageRole, Thread

THREAD_ID = THREAD_EXAMPLE_ID


# --- Threads --------------------------------------------------------------------------------------------


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A thread",
            value={
                "id": THREAD_ID,
                "title": "Refund for order 1042",
                "metadata": {"channel": "web"},
                "created_by": {"id": 7, "username": "ada"},
                "last_sequence": 12,
                "created_at": "2025-01-01T12:00:00Z",
                "updated_at": "2025-01-01T12:03:10Z",
            },
            response_only=True,
        )
    ]
)
class ThreadSerializer(serializers.ModelSerializer):
    created_by = UserRefSerializer(read_only=True, allow_null=True)
    metadata = JsonObjectField(read_only=True)
    last_sequence = serializers.IntegerField(
        read_only=True, help_text="The id of the newest event: read the log from here with events/?after=."
    )

    class Meta:
        model = Thread
        fields = ["id", "title", "metadata", "created_by", "last_sequence", "created_at", "updated_at"]
        read_only_fields = fields


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A new thread",
            value={"title": "Refund for order 1042", "metadata": {"channel": "web"}},
            request_only=True,
        )
    ]
)
class ThreadCreateSerializer(StrictSerializer):
    title = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)
    metadata = JsonObjectField(required=False, default=dict)


@extend_schema_serializer(examples=[OpenApiExample("Rename", value={"title": "Refund (resolved)"}, request_only=True)])
class ThreadUpdateSerializer(StrictSerializer):
    title = serializers.CharField(max_length=300, required=False, allow_blank=True)
    metadata = JsonObjectField(required=False, help_text="Replaces the metadata object.")


# --- Members --------------------------------------------------------------------------------------------


class AgentRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A user member",
            value={
                "id": "5a6b7c8d-4444-4e5f-9a0b-1c2d3e4f5a6b",
                "kind": "user",
                "user": {"id": 7, "username": "ada"},
                "agent": None,
                "added_at": "2025-01-01T12:00:00Z",
            },
            response_only=True,
        ),
        OpenApiExample(
            "An agent member",
            value={
                "id": "6b7c8d9e-5555-4f60-8b1c-2d3e4f5a6b7c",
                "kind": "agent",
                "user": None,
                "agent": {"id": "8d9e0f1a-6666-4a7b-8c9d-0e1f2a3b4c5d", "slug": "support-bot", "name": "Support bot"},
                "added_at": "2025-01-01T12:00:01Z",
            },
            response_only=True,
        ),
    ]
)
class ThreadMemberSerializer(serializers.Serializer):
    """A member; ``agent`` is null for an agent that has since been deleted (its id stays in ``agent_id``)."""

    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=["user", "agent"])
    user = UserRefSerializer(allow_null=True)
    agent = AgentRefSerializer(allow_null=True)
    added_at = serializers.DateTimeField()


@extend_schema_serializer(
    examples=[
        OpenApiExample("Add a user", value={"user": "grace"}, request_only=True),
        OpenApiExample("Add an agent", value={"agent": "support-bot"}, request_only=True),
    ]
)
class ThreadMemberCreateSerializer(StrictSerializer):
    user = serializers.CharField(max_length=150, required=False, help_text="The username of a tenant member.")
    agent = serializers.SlugField(max_length=63, required=False, help_text="The slug of an agent of the tenant.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if ("user" in attrs) == ("agent" in attrs):
            raise serializers.ValidationError("Give exactly one of 'user' and 'agent'.", code="one_of")
        return attrs


# --- Messages -------------------------------------------------------------------------------------------


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A user's message",
            value={
                "id": "2b3c4d5e-2222-4f60-8a1b-2c3d4e5f6a7b",
                "role": "user",
                "content": [{"type": "text", "text": "Where is my refund?"}],
                "author": 7,
                "agent": None,
                "job": None,
                "metadata": {},
                "created_at": "2025-01-01T12:00:00Z",
            },
            response_only=True,
        )
    ]
)
class MessageSerializer(serializers.ModelSerializer):
    """A message, in the same shape as the ``data`` of its ``message.created`` event."""

    role = serializers.ChoiceField(choices=MessageRole.choices)
    content = serializers.SerializerMethodField()
    author = serializers.IntegerField(source="author_id", allow_null=True, help_text="The id of the user who wrote it.")
    agent = serializers.UUIDField(source="agent_id", allow_null=True, help_text="The id of the agent that wrote it.")
    job = serializers.UUIDField(source="job_id", allow_null=True, help_text="The job that wrote it.")
    metadata = JsonObjectField()

    class Meta:
        model = Message
        fields = ["id", "role", "content", "author", "agent", "job", "metadata", "created_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "array", "items": CONTENT_FIELD_SCHEMA["oneOf"][1]["items"]})
    def get_content(self, message: Message) -> list[ContentBlock]:
        return list(message.content)


@extend_schema_serializer(
    examples=[
        OpenApiExample("Ask the thread's agent", value={"content": "Where is my refund?"}, request_only=True),
        OpenApiExample(
            "Everything a message may carry",
            value={
                "agent": "support-bot",
                "content": [{"type": "text", "text": "Summarise these files."}],
                "attachments": [{"file": "5b0e4c52-9d0a-4c6e-8f43-3f3b8f7e2a10"}],
                "file_urls": ["https://files.example.com/public/terms.pdf"],
                "busy": "enqueue",
                "additional_instructions": "Answer in French.",
                "context": {"customer_id": "c-1042"},
                "expires_in_seconds": 600,
                "job_id": JOB_EXAMPLE["id"],
            },
            request_only=True,
        ),
    ]
)
class MessageCreateSerializer(ExpirySerializer, MessageSubmitSerializer):
    """The shared message fields (jobs.api.submission), with an optional ``agent``; the thread is in the path."""

    expiry_fields = ("expires_in_seconds", "expiry_seconds")

    agent = agent_field(required=False, help_text="The agent to answer; optional when the thread has exactly one.")

    def get_fields(self) -> dict[str, Any]:
        # The thread is the history here: a supplied one (a stateless turn) belongs on the agents route.
        fields = super().get_fields()
        del fields["chat_history"], fields["store_thread"]
        return fields


_LINKS_EXAMPLE = {
    "job": f"/api/v1/acme/jobs/{JOB_EXAMPLE['id']}/",
    "thread": f"/api/v1/acme/threads/{THREAD_ID}/",
    "events": f"/api/v1/acme/threads/{THREAD_ID}/events/?after=11",
}


class JobLinksSerializer(serializers.Serializer):
    job = serializers.CharField(help_text="The job: status and result.")
    thread = serializers.CharField()
    events = serializers.CharField(help_text="The thread's event log from this job's first event.")


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Queued (202)",
            value={
                **QUEUED_JOB_EXAMPLE,
                "message": JOB_EXAMPLE["input_message"],
                "links": _LINKS_EXAMPLE,
            },
            response_only=True,
            status_codes=["202"],
        ),
        OpenApiExample(
            "Finished, with wait=true (200)",
            value={
                **JOB_EXAMPLE,
                "message": JOB_EXAMPLE["input_message"],
                "links": _LINKS_EXAMPLE,
            },
            response_only=True,
            status_codes=["200"],
        ),
    ]
)
class MessageJobSerializer(JobSummarySerializer):
    """The job a message started: follow it at ``links``; ``output``, ``usage`` and ``error`` fill in as it ends."""

    message = serializers.SerializerMethodField(help_text="The id of the message just stored.")
    links = serializers.SerializerMethodField()

    class Meta(JobSummarySerializer.Meta):
        fields = [*JobSummarySerializer.Meta.fields, "message", "links"]
        read_only_fields = fields

    def get_message(self, job: Any) -> str | None:
        return self.get_input_message(job)

    @extend_schema_field(JobLinksSerializer)
    def get_links(self, job: Any) -> dict[str, str]:
        tenant = self.context["tenant"]
        thread = f"/api/v1/{tenant}/threads/{job.thread_id}/"
        return {
            "job": f"/api/v1/{tenant}/jobs/{job.id}/",
            "thread": thread,
            "events": f"{thread}events/?after={self.context.get('events_after', 0)}",
        }


# --- Events and state -----------------------------------------------------------------------------------


class EventQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, required=False, default=0, help_text="Return events with a larger id (sequence) than this."
    )
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    cursor = serializers.CharField(required=False, allow_blank=True, help_text=CURSOR_DESCRIPTION)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "An event",
            value={
                "id": 12,
                "type": "job.succeeded",
                "thread": THREAD_ID,
                "job": JOB_EXAMPLE["id"],
                "agent": "8d9e0f1a-6666-4a7b-8c9d-0e1f2a3b4c5d",
                "created_at": "2025-01-01T12:00:00.420000Z",
                "data": {"id": JOB_EXAMPLE["id"], "status": "succeeded", "usage": JOB_EXAMPLE["usage"]},
            },
            response_only=True,
        )
    ]
)
class EventSerializer(serializers.Serializer):
    """One event of the contract (DESIGN.md); the same shape streams carry."""

    id = serializers.IntegerField(help_text="The thread's sequence number: gap-free, the cursor for ?after=.")
    type = serializers.CharField(help_text="Dotted type, e.g. message.created, llm.chunk, job.succeeded.")
    thread = serializers.UUIDField()
    job = serializers.UUIDField(allow_null=True)
    agent = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_fields(self) -> dict[str, serializers.Field]:
        # Added here, not as an attribute: a class attribute named ``data`` would hide Serializer.data.
        fields = super().get_fields()
        fields["data"] = JsonObjectField(help_text="What happened; its keys depend on the type.")
        return fields


EVENT_EXAMPLE = {
    "id": 11,
    "type": "llm.chunk",
    "thread": THREAD_ID,
    "job": JOB_EXAMPLE["id"],
    "agent": "8d9e0f1a-6666-4a7b-8c9d-0e1f2a3b4c5d",
    "created_at": "2025-01-01T12:00:00.300000Z",
    "data": {"delta": "Hello"},
}


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A page of the log",
            value={
                "items": [EVENT_EXAMPLE],
                "next_after": 11,
                "has_more": True,
            },
            response_only=True,
        )
    ]
)
class EventPageSerializer(serializers.Serializer):
    items = EventSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as ?after= for the next page (the last id, or your after).")
    has_more = serializers.BooleanField()


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A page of the log by cursor",
            value={
                "items": [EVENT_EXAMPLE],
                "limit": 1,
                "next": f"https://aihub.example.com/api/v1/acme/threads/{THREAD_ID}/events/?cursor=cD0xMQ%3D%3D&limit=1",
                "previous": None,
            },
            response_only=True,
        )
    ]
)
class EventCursorPageSerializer(serializers.Serializer):
    items = EventSerializer(many=True)
    limit = serializers.IntegerField()
    next = serializers.URLField(allow_null=True, help_text="The next page; null on the last one.")
    previous = serializers.URLField(allow_null=True, help_text="The page before; null on the first one.")


@extend_schema_serializer(
    examples=[OpenApiExample("State", value={"state": {"step": "collect-address", "order": 1042}}, response_only=True)]
)
class ThreadStateSerializer(serializers.Serializer):
    state = JsonObjectField()


@extend_schema_serializer(
    examples=[
        OpenApiExample("Merge one key", value={"state": {"step": "confirm"}, "mode": "merge"}, request_only=True),
        OpenApiExample("Replace everything", value={"state": {}, "mode": "replace"}, request_only=True),
    ]
)
class ThreadStateUpdateSerializer(StrictSerializer):
    state = JsonObjectField()
    mode = serializers.ChoiceField(
        choices=["merge", "replace"],
        default="merge",
        help_text="merge: set these keys, keep the others; replace: the state becomes exactly this.",
    )


# --- Runtime view, checkpoints and forks ----------------------------------------------------------------

CHECKPOINT_EXAMPLE: dict[str, Any] = {
    "id": "3e4f5a6b-7777-4c8d-9e0f-1a2b3c4d5e6f",
    "thread": THREAD_ID,
    "job": JOB_EXAMPLE["id"],
    "agent": "8d9e0f1a-6666-4a7b-8c9d-0e1f2a3b4c5d",
    "message": "2b3c4d5e-8888-4f6a-9b0c-1d2e3f4a5b6c",
    "event_id": 12,
    "state": {"customer_id": 42},
    "created_at": "2025-01-01T12:03:10Z",
}


@extend_schema_serializer(examples=[OpenApiExample("After a turn", value=CHECKPOINT_EXAMPLE, response_only=True)])
class CheckpointSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    thread = serializers.UUIDField(source="thread_id")
    job = serializers.UUIDField(source="job_id", allow_null=True, help_text="The job whose turn ended here.")
    agent = serializers.UUIDField(
        source="agent_id", allow_null=True, help_text="The active agent: who answers the next message."
    )
    message = serializers.UUIDField(
        source="message_id", allow_null=True, help_text="The last message: the checkpoint has the messages up to it."
    )
    event_id = serializers.IntegerField(source="event_sequence", help_text="The id of the turn's last event.")
    state = serializers.JSONField(help_text="The thread's state at that point.")
    created_at = serializers.DateTimeField()


class RuntimeJobSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="job.pk")
    status = serializers.CharField(source="job.status")
    agent = serializers.CharField(source="job.agent.slug")
    step = serializers.CharField(
        allow_null=True, help_text="The type of the job's latest step event (as in jobs/{id}/state)."
    )


class PendingActionSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    agent = serializers.CharField()
    request = serializers.JSONField(help_text="What the job asks for; answer it with POST jobs/{id}/respond.")


class HandoffStepSerializer(serializers.Serializer):
    event = serializers.IntegerField(help_text="The id of the handoff event.")
    to = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()

    def get_fields(self) -> dict[str, Any]:
        # ``from`` is a Python keyword, so it cannot be declared above.
        return {"from": serializers.CharField(allow_null=True), **super().get_fields()}


RUNTIME_EXAMPLE: dict[str, Any] = {
    "thread": THREAD_ID,
    "active_agent": {"id": "8d9e0f1a-6666-4a7b-8c9d-0e1f2a3b4c5d", "slug": "billing", "name": "Billing"},
    "active_job": {"id": JOB_EXAMPLE["id"], "status": "requires_action", "agent": "billing", "step": "tool.started"},
    "queued_jobs": 0,
    "pending_actions": [
        {
            "job": JOB_EXAMPLE["id"],
            "agent": "billing",
            "request": {
                "type": "tool_approval",
                "tool": "refund",
                "arguments": {"order": 1042},
                "requested_at": "2025-01-01T12:03:09Z",
            },
        }
    ],
    "handoffs": [
        {"event": 7, "from": "triage", "to": "billing", "reason": "An invoice question.", "at": "2025-01-01T12:01:00Z"}
    ],
    "state": {"customer_id": 42},
    "state_version": 5,
    "variables": {"customer_id": 42},
    "last_event_id": 14,
    "latest_checkpoint": CHECKPOINT_EXAMPLE,
}


@extend_schema_serializer(
    examples=[OpenApiExample("Waiting for an approval", value=RUNTIME_EXAMPLE, response_only=True)]
)
class ThreadRuntimeSerializer(serializers.Serializer):
    thread = serializers.UUIDField()
    active_agent = AgentRefSerializer(
        allow_null=True,
        help_text="Who answers the next message when none is named: the latest handoff's target, else the active "
        "job's agent, else the latest checkpoint's.",
    )
    active_job = RuntimeJobSerializer(
        allow_null=True, help_text="The job running (or waiting) on the thread, else the next queued."
    )
    queued_jobs = serializers.IntegerField(help_text="Jobs waiting their turn on the thread.")
    pending_actions = PendingActionSerializer(many=True, help_text="Human-in-the-loop requests waiting for an answer.")
    handoffs = HandoffStepSerializer(many=True, help_text="The handoff chain, oldest first.")
    state = serializers.JSONField(help_text="The thread's state (PATCH .../state changes it).")
    state_version = serializers.IntegerField(
        help_text="The id of the latest state.updated event (0 before any): it grows with every change of the state."
    )
    variables = serializers.JSONField(
        source="state", help_text="SwarmForge's session variables: the same object as `state`."
    )
    last_event_id = serializers.IntegerField()
    latest_checkpoint = CheckpointSerializer(allow_null=True)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "From a checkpoint",
            value={"checkpoint": CHECKPOINT_EXAMPLE["id"], "title": "Refund, the other way"},
            request_only=True,
        )
    ]
)
class ThreadForkSerializer(StrictSerializer):
    checkpoint = serializers.UUIDField(help_text="One of this thread's checkpoints (GET .../checkpoints).")
    title = serializers.CharField(
        max_length=300, required=False, allow_blank=True, help_text="The new thread's title; default: the source's."
    )
