"""Serializers of jobs shared by every route that starts or shows one (agents, threads, jobs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from pydantic import ValidationError as PydanticValidationError
from rest_framework import serializers

from aihub.access.api.serializers import StrictSerializer
from jobs.models import CancelMode, Job, JobStatus
from threads.content import validate_content

JOB_EXAMPLE: dict[str, Any] = {
    "id": "0f8e5a52-4a51-4b8e-9d53-5b2f0c6f3c11",
    "status": "succeeded",
    "thread": "7c1d2e3f-1111-4a2b-9c3d-4e5f6a7b8c9d",
    "agent": "support-bot",
    "agent_version": 3,
    "input_message": "2b3c4d5e-2222-4f60-8a1b-2c3d4e5f6a7b",
    "output": {
        "message": "3c4d5e6f-3333-4a1b-8c2d-3e4f5a6b7c8d",
        "content": [{"type": "text", "text": "Hello! How can I help?"}],
    },
    "usage": {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
    "error": None,
    "created_at": "2025-01-01T12:00:00Z",
    "started_at": "2025-01-01T12:00:00.050000Z",
    "finished_at": "2025-01-01T12:00:00.420000Z",
}


@extend_schema_serializer(examples=[OpenApiExample("A finished job", value=JOB_EXAMPLE, response_only=True)])
class JobSummarySerializer(serializers.ModelSerializer):
    """One job as every job-starting route answers it: status, where it runs, and its result once final."""

    status = serializers.ChoiceField(choices=JobStatus.choices, read_only=True)
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    input_message = serializers.SerializerMethodField(help_text="The id of the message this job answers.")
    output = serializers.JSONField(
        read_only=True, help_text='Once succeeded: {"message": <id>, "content": [content blocks]}.'
    )
    usage = serializers.JSONField(read_only=True, help_text="Tokens used: input_tokens, output_tokens, total_tokens.")
    error = serializers.JSONField(read_only=True, allow_null=True, help_text="Problem details when the job failed.")

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "thread",
            "agent",
            "agent_version",
            "input_message",
            "output",
            "usage",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_input_message(self, job: Job) -> str | None:
        message = (job.input or {}).get("message")
        return str(message) if message else None


# --- The /jobs routes ---------------------------------------------------------------------------------------

JOB_EXPIRES_MAX_SECONDS = 7 * 24 * 3600
"""The longest a background job may wait to start."""

JOB_DETAIL_EXAMPLE: dict[str, Any] = {
    **JOB_EXAMPLE,
    "input": {
        "content": [{"type": "text", "text": "Hello"}],
        "additional_instructions": "Answer in one sentence.",
        "context": {"customer_id": "c-42"},
    },
    "attempts": 1,
    "max_attempts": 2,
    "cancel_requested": "",
    "expires_at": None,
    "heartbeat_at": "2025-01-01T12:00:00.400000Z",
}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "Shorthand for one text block."},
            {
                "type": "array",
                "description": "Content blocks: text, image, file, tool_call, tool_result, citation.",
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": ["text", "image", "file", "tool_call", "tool_result", "citation"],
                        }
                    },
                    "additionalProperties": True,
                },
            },
        ],
        "example": "What can you do?",
    }
)
class ContentField(serializers.Field):
    """Message content: a string, or a list of content blocks; validated blocks come out."""

    default_error_messages = {"empty": "The content has no blocks."}

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        try:
            blocks = validate_content(data)
        except PydanticValidationError as exc:
            raise serializers.ValidationError(
                [f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}" for error in exc.errors()]
            ) from exc
        if not blocks:
            self.fail("empty")
        return blocks

    def to_representation(self, value: Any) -> Any:
        return value


class JobInputSerializer(serializers.Serializer):
    content = serializers.JSONField(help_text="The message's content blocks.")
    additional_instructions = serializers.CharField()
    # The metaclass pops declared fields off the class, so this does not shadow Serializer.context.
    context = serializers.JSONField(help_text="Given to tools, never to the model.")  # type: ignore[assignment]


@extend_schema_serializer(examples=[OpenApiExample("A finished job", value=JOB_DETAIL_EXAMPLE, response_only=True)])
class JobSerializer(JobSummarySerializer):
    """A job with its input, attempts and timings: what GET /jobs/{id}/ answers."""

    input = serializers.SerializerMethodField()
    cancel_requested = serializers.CharField(
        read_only=True, help_text="'immediate' or 'after_turn' once a cancellation of the running job was asked for."
    )

    class Meta(JobSummarySerializer.Meta):
        fields = [
            *JobSummarySerializer.Meta.fields,
            "input",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "expires_at",
            "heartbeat_at",
        ]
        read_only_fields = fields

    @extend_schema_field(JobInputSerializer)
    def get_input(self, job: Job) -> dict[str, Any]:
        given = job.input or {}
        return {
            "content": given.get("content", []),
            "additional_instructions": given.get("additional_instructions", ""),
            "context": given.get("context", {}),
        }


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Ask an agent in the background",
            value={"agent": "support-bot", "input": "Summarise our refund policy."},
            request_only=True,
        ),
        OpenApiExample(
            "Continue a thread, queueing behind its active job",
            value={
                "agent": "support-bot",
                "thread": "7c1d2e3f-1111-4a2b-9c3d-4e5f6a7b8c9d",
                "input": [{"type": "text", "text": "And for digital goods?"}],
                "busy": "enqueue",
                "expires_in_seconds": 600,
                "additional_instructions": "Answer in one sentence.",
                "context": {"customer_id": "c-42"},
            },
            request_only=True,
        ),
    ]
)
class JobSubmitSerializer(StrictSerializer):
    agent = serializers.SlugField(max_length=63, help_text="The agent's slug.")
    input = ContentField(help_text="The message: a string, or a list of content blocks.")
    thread = serializers.UUIDField(required=False, help_text="A thread to continue; a new thread when absent.")
    busy = serializers.ChoiceField(
        choices=["reject", "enqueue", "interrupt"],
        default="reject",
        help_text="When the thread has an active job: 409 (reject), wait for it (enqueue), or cancel it (interrupt).",
    )
    expires_in_seconds = serializers.IntegerField(
        required=False, min_value=1, max_value=JOB_EXPIRES_MAX_SECONDS, help_text="Expire if not started by then."
    )
    expires_at = serializers.DateTimeField(required=False, help_text="Expire if not started by then.")
    additional_instructions = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=20_000, help_text="Added to the system prompt."
    )
    # The metaclass pops declared fields off the class, so this does not shadow Serializer.context.
    context = serializers.DictField(  # type: ignore[assignment]
        required=False, default=dict, help_text="An object tools can read; the model never sees it."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if "expires_in_seconds" in attrs and "expires_at" in attrs:
            raise serializers.ValidationError({"expires_at": "Give expires_in_seconds or expires_at, not both."})
        if "expires_in_seconds" in attrs:
            attrs["expires_at"] = timezone.now() + timedelta(seconds=attrs.pop("expires_in_seconds"))
        elif "expires_at" in attrs and attrs["expires_at"] <= timezone.now():
            raise serializers.ValidationError({"expires_at": "This time has passed."})
        return attrs


@extend_schema_serializer(
    examples=[
        OpenApiExample("Stop now", value={"mode": "immediate"}, request_only=True),
        OpenApiExample("Stop after the current turn", value={"mode": "after_turn"}, request_only=True),
    ]
)
class JobCancelSerializer(StrictSerializer):
    mode = serializers.ChoiceField(
        choices=CancelMode.choices,
        default=CancelMode.IMMEDIATE,
        help_text="immediate: stop at the next step, keeping what was complete; after_turn: finish the turn first.",
    )


JOB_QUEUED_EXAMPLE: dict[str, Any] = {
    **JOB_DETAIL_EXAMPLE,
    "status": "queued",
    "output": {},
    "usage": {},
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
    "heartbeat_at": None,
    "expires_at": "2025-01-01T12:10:00Z",
}
JOB_CANCELLING_EXAMPLE: dict[str, Any] = {
    **JOB_QUEUED_EXAMPLE,
    "status": "running",
    "attempts": 1,
    "started_at": "2025-01-01T12:00:00.050000Z",
    "heartbeat_at": "2025-01-01T12:00:02.050000Z",
    "cancel_requested": "immediate",
}
