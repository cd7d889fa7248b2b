"""Request and response bodies of the threads API. Requests are strict: unknown fields are 400s."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from pydantic import ValidationError as PydanticValidationError
from rest_framework import serializers

from aihub.access.api.serializers import StrictSerializer
from jobs.api.serializers import JOB_EXAMPLE, JobSummarySerializer
from threads.content import ContentBlock, content_adapter, validate_content
from threads.models import Message, MessageRole, Thread

THREAD_ID = "7c1d2e3f-1111-4a2b-9c3d-4e5f6a7b8c9d"
MAX_WAIT_SECONDS = 60
MAX_EXPIRES_IN_SECONDS = 7 * 24 * 3600


def _openapi_30(node: Any, defs: dict[str, Any]) -> Any:
    """Pydantic's JSON Schema (2020-12) as OpenAPI 3.0 accepts it: $defs inlined, ``const`` as a one-value
    enum, ``anyOf [X, null]`` as a nullable X, and no discriminator (its mapping would point at the $defs)."""
    if isinstance(node, list):
        return [_openapi_30(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _openapi_30(defs[ref.removeprefix("#/$defs/")], defs)
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        merged = rest[0] if len(rest) == 1 else {"anyOf": rest}
        extra = {key: value for key, value in node.items() if key != "anyOf"}
        return {**_openapi_30(merged, defs), **_openapi_30(extra, defs), "nullable": True}
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "discriminator":
            continue
        if key == "const":
            converted["enum"] = [value]
        elif key == "properties":
            converted[key] = {name: _openapi_30(prop, defs) for name, prop in value.items()}
        else:
            converted[key] = _openapi_30(value, defs)
    return converted


def _content_field_schema() -> dict[str, Any]:
    # Inlined: spectacular does not know pydantic's $defs, and refs to them would dangle.
    schema = content_adapter.json_schema()
    defs = schema.pop("$defs", {})
    return {
        "oneOf": [{"type": "string", "description": "Shorthand for one text block."}, _openapi_30(schema, defs)],
        "description": "A string, or a list of content blocks (text, image, file, tool_call, tool_result, citation).",
    }


CONTENT_FIELD_SCHEMA = _content_field_schema()


@extend_schema_field(CONTENT_FIELD_SCHEMA)
class ContentField(serializers.JSONField):
    """Message content: a string or a list of content blocks (validated in the serializer, per block)."""


class JsonObjectField(serializers.JSONField):
    """A JSON object (not a list, string or number)."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.", code="not_an_object")
        return value


extend_schema_field({"type": "object", "additionalProperties": True})(JsonObjectField)


def content_errors(content: Any, exc: PydanticValidationError) -> dict[str, list[str]]:
    """Pydantic's errors as problem ``errors`` fields: ``content[0].text`` and the like.

    The discriminated union adds the block's tag to each location (``0 → text → text``); clients think of
    ``content[0].text``, so the tag is dropped.
    """
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        location = list(error["loc"])
        if (
            len(location) >= 2
            and isinstance(location[0], int)
            and isinstance(content, list)
            and location[0] < len(content)
            and isinstance(content[location[0]], dict)
            and location[1] == content[location[0]].get("type")
        ):
            del location[1]
        name = "content"
        for part in location:
            name += f"[{part}]" if isinstance(part, int) else f".{part}"
        errors.setdefault(name, []).append(str(error["msg"]))
    return errors


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
                "content": [{"type": "text", "text": "Summarise this file."}, {"type": "file", "file_id": "f-42"}],
                "busy": "enqueue",
                "additional_instructions": "Answer in French.",
                "context": {"customer_id": "c-1042"},
                "expires_in_seconds": 600,
            },
            request_only=True,
        ),
    ]
)
class MessageCreateSerializer(StrictSerializer):
    agent = serializers.SlugField(
        max_length=63, required=False, help_text="The agent to answer; optional when the thread has exactly one."
    )
    content = ContentField()
    busy = serializers.ChoiceField(
        choices=["reject", "enqueue", "interrupt"],
        default="reject",
        help_text="When the thread has an active job: answer 409, queue behind it, or cancel it.",
    )
    additional_instructions = serializers.CharField(
        max_length=20_000, required=False, default="", allow_blank=True, help_text="Added to the prompt of this job."
    )
    expires_in_seconds = serializers.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRES_IN_SECONDS,
        required=False,
        allow_null=True,
        help_text="A job still waiting for a worker (or for an answer) this long after submission expires.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # Added here, not as an attribute: a class attribute named ``context`` would hide Serializer.context.
        fields = super().get_fields()
        fields["context"] = JsonObjectField(
            required=False,
            default=dict,
            help_text="Handed to tools; the model never sees it (ids, the caller's locale).",
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        content = attrs["content"]
        if content == "" or content == []:
            raise serializers.ValidationError({"content": ["A message needs some content."]})
        try:
            attrs["content"] = validate_content(content)
        except PydanticValidationError as exc:
            raise serializers.ValidationError(content_errors(content, exc)) from exc
        return attrs


class MessagePostQuerySerializer(serializers.Serializer):
    wait = serializers.BooleanField(
        required=False, default=False, help_text="Wait for the job to end (or ask for action) before answering."
    )
    timeout = serializers.IntegerField(
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        required=False,
        default=30,
        help_text=f"Seconds to wait with wait=true (at most {MAX_WAIT_SECONDS}).",
    )


class JobLinksSerializer(serializers.Serializer):
    job = serializers.CharField(help_text="The job: status and result.")
    thread = serializers.CharField()
    events = serializers.CharField(help_text="The thread's event log from this job's first event.")


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Queued (202)",
            value={
                **JOB_EXAMPLE,
                "status": "queued",
                "output": {},
                "usage": {},
                "started_at": None,
                "finished_at": None,
                "message": JOB_EXAMPLE["input_message"],
                "links": {
                    "job": f"/api/v1/acme/jobs/{JOB_EXAMPLE['id']}/",
                    "thread": f"/api/v1/acme/threads/{THREAD_ID}/",
                    "events": f"/api/v1/acme/threads/{THREAD_ID}/events/?after=11",
                },
            },
            response_only=True,
            status_codes=["202"],
        ),
        OpenApiExample(
            "Finished, with wait=true (200)",
            value={
                **JOB_EXAMPLE,
                "message": JOB_EXAMPLE["input_message"],
                "links": {
                    "job": f"/api/v1/acme/jobs/{JOB_EXAMPLE['id']}/",
                    "thread": f"/api/v1/acme/threads/{THREAD_ID}/",
                    "events": f"/api/v1/acme/threads/{THREAD_ID}/events/?after=11",
                },
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


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A page of the log",
            value={
                "items": [
                    {
                        "id": 11,
                        "type": "llm.chunk",
                        "thread": THREAD_ID,
                        "job": JOB_EXAMPLE["id"],
                        "agent": "8d9e0f1a-6666-4a7b-8c9d-0e1f2a3b4c5d",
                        "created_at": "2025-01-01T12:00:00.300000Z",
                        "data": {"delta": "Hello"},
                    }
                ],
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
