"""Serializers of jobs shared by every route that starts or shows one (agents, threads, jobs)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from aihub.access.api.serializers import StrictSerializer
from jobs import turns
from jobs.api.submission import ExpirySerializer, MessageSubmitSerializer, agent_field, thread_field
from jobs.models import Artifact, ArtifactKind, CancelMode, Job, JobStatus
from jobs.services import artifact_content_url

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
    "usage": {
        "input_tokens": 12,
        "output_tokens": 7,
        "total_tokens": 19,
        "cost": 0.0000072,
        "currency": "USD",
        "model": "openai/gpt-4o-mini",
    },
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
    usage = serializers.JSONField(
        read_only=True,
        help_text="Once ended: input_tokens, output_tokens, total_tokens, cost (at the model catalogue's prices), "
        "currency and model.",
    )
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


TURN_MESSAGE_EXAMPLE: dict[str, Any] = {
    "id": "3c4d5e6f-3333-4a1b-8c2d-3e4f5a6b7c8d",
    "role": "assistant",
    "content": [{"type": "text", "text": "Hello! How can I help?"}],
    "agent": "support-bot",
    "caller_agent": None,
    "timestamp": "2025-01-01T12:00:00.410000Z",
}

STATELESS_TURN_EXAMPLE: dict[str, Any] = {
    **JOB_EXAMPLE,
    "new_messages": [
        {
            **TURN_MESSAGE_EXAMPLE,
            "id": JOB_EXAMPLE["input_message"],
            "role": "user",
            "content": [
                {"type": "text", "text": "What does the attached file say?"},
                {
                    "type": "file",
                    "file_id": "5b0e4c52-9d0a-4c6e-8f43-3f3b8f7e2a10",
                    "name": "terms.pdf",
                    "media_type": "application/pdf",
                },
            ],
            "timestamp": "2025-01-01T12:00:00Z",
        },
        TURN_MESSAGE_EXAMPLE,
    ],
    "file_ids_map": {"terms.pdf": "5b0e4c52-9d0a-4c6e-8f43-3f3b8f7e2a10"},
    "cost": 0.0000072,
}


class TurnMessageSerializer(serializers.Serializer):
    """A message a turn added, in chat_history's shape (append it to the history you keep)."""

    id = serializers.UUIDField()
    role = serializers.CharField()
    content = serializers.JSONField(help_text="Content blocks.")
    agent = serializers.CharField(allow_null=True)
    caller_agent = serializers.CharField(allow_null=True)
    timestamp = serializers.DateTimeField()


@extend_schema_serializer(
    examples=[OpenApiExample("A stateless turn, ended", value=STATELESS_TURN_EXAMPLE, response_only=True)]
)
class StatelessTurnSerializer(JobSummarySerializer):
    """A stateless turn's job (a message with chat_history): the job, and what the turn added. The job's final
    event carries the same ``new_messages``, ``file_ids_map`` and ``cost`` in its data."""

    new_messages = serializers.SerializerMethodField(
        help_text="What this turn added, oldest first: your message, then the agent's replies."
    )
    file_ids_map = serializers.SerializerMethodField(
        help_text="File name → stored file id for every file uploaded or fetched (file_urls) with the request."
    )
    cost = serializers.SerializerMethodField(
        help_text="The turn's cost in the usage's currency; null where prices are unknown (an unpriced model, or "
        "your own client_config endpoint)."
    )

    class Meta(JobSummarySerializer.Meta):
        fields = [*JobSummarySerializer.Meta.fields, "new_messages", "file_ids_map", "cost"]
        read_only_fields = fields

    def to_representation(self, instance: Job) -> dict[str, Any]:
        # One read of the turn's messages for all three fields.
        self._summary = turns.turn_summary(instance)
        return super().to_representation(instance)

    @extend_schema_field(TurnMessageSerializer(many=True))
    def get_new_messages(self, job: Job) -> list[dict[str, Any]]:
        return list(self._summary["new_messages"])

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string", "format": "uuid"}})
    def get_file_ids_map(self, job: Job) -> dict[str, str]:
        return dict(self._summary["file_ids_map"])

    @extend_schema_field({"type": "number", "nullable": True})
    def get_cost(self, job: Job) -> float | None:
        cost = self._summary["cost"]
        return float(cost) if cost is not None else None


def job_answer_body(job: Job) -> Any:
    """How a message route shows the job it started: with the turn's messages for a stateless turn."""
    return (StatelessTurnSerializer if turns.is_stateless(job) else JobSummarySerializer)(job).data


QUEUED_JOB_EXAMPLE: dict[str, Any] = {
    **JOB_EXAMPLE,
    "status": "queued",
    "output": {},
    "usage": {},
    "started_at": None,
    "finished_at": None,
}
"""A job just submitted, as JobSummarySerializer shows it (the 202 of every route that starts one)."""

THREAD_EXAMPLE_ID = str(JOB_EXAMPLE["thread"])

# --- The /jobs routes ---------------------------------------------------------------------------------------

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
    "results_purged_at": None,
    "heartbeat_at": "2025-01-01T12:00:00.400000Z",
    "pending_action": None,
    "webhook": "https://hooks.example.com/aihub",
}


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
    pending_action = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="While requires_action, what the job waits for: "
        '{"type": "tool_approval", "tool_call": {"id", "name", "arguments"}, "requested_at"} or '
        '{"type": "input", "prompt", "requested_at"}; answer it with POST /jobs/{id}/respond. Null otherwise.',
    )

    webhook = serializers.CharField(read_only=True, help_text="Where the job's final state is POSTed; empty for none.")
    expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="A job still waiting then expires (expires_in_seconds, expiry_seconds or expires_at at submission); "
        "an ended job's results are purged JOBS_RESULT_RETENTION_SECONDS after it, when the operator set one.",
    )
    results_purged_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the janitor purged the ended job's output and artifacts (past its expiry and the retention "
        "period); null while they are kept. Usage, cost and error stay.",
    )

    trace_id = serializers.CharField(
        read_only=True,
        help_text="The OpenTelemetry trace the job was submitted in (32 hex digits), which its task, agent run, "
        "model and tool calls join; empty when the server does not trace.",
    )

    class Meta(JobSummarySerializer.Meta):
        fields = [
            *JobSummarySerializer.Meta.fields,
            "input",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "expires_at",
            "results_purged_at",
            "heartbeat_at",
            "pending_action",
            "webhook",
            "trace_id",
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
            "With a job id of your choosing (safe to retry)",
            value={"agent": "support-bot", "input": "Summarise our refund policy.", "job_id": JOB_EXAMPLE["id"]},
            request_only=True,
        ),
        OpenApiExample(
            "Continue a thread, queueing behind its active job",
            value={
                "agent": "support-bot",
                "thread": THREAD_EXAMPLE_ID,
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
class JobSubmitSerializer(ExpirySerializer, MessageSubmitSerializer):
    """The shared message fields (jobs.api.submission), the content called ``input``, with ``agent`` and
    ``thread`` in the body."""

    content_field = "input"

    agent = agent_field(required=True, help_text="The agent's slug.")
    thread = thread_field()


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


JOB_REQUIRES_ACTION_EXAMPLE: dict[str, Any] = {
    **JOB_CANCELLING_EXAMPLE,
    "status": "requires_action",
    "cancel_requested": "",
    "heartbeat_at": None,
    "pending_action": {
        "type": "tool_approval",
        "tool_call": {"id": "call_8f2c", "name": "issue_refund", "arguments": {"order_id": "A-1", "amount": 20}},
        "requested_at": "2025-01-01T12:00:01.200000Z",
    },
}
JOB_RESUMED_EXAMPLE: dict[str, Any] = {**JOB_REQUIRES_ACTION_EXAMPLE, "status": "queued", "pending_action": None}

_RESPOND_FIELDS = {"approve": set(), "reject": {"reason"}, "tool_output": {"output"}, "text": {"text"}}


@extend_schema_serializer(
    examples=[
        OpenApiExample("Approve the tool call", value={"action": "approve"}, request_only=True),
        OpenApiExample(
            "Reject it, telling the model why",
            value={"action": "reject", "reason": "Refunds above 10 need a manager."},
            request_only=True,
        ),
        OpenApiExample(
            "Answer in the tool's place",
            value={"action": "tool_output", "output": {"refund_id": "R-77", "status": "issued"}},
            request_only=True,
        ),
        OpenApiExample(
            "Give the text the agent asked for", value={"action": "text", "text": "Order A-1"}, request_only=True
        ),
    ]
)
class JobRespondSerializer(StrictSerializer):
    """The answer to a job's ``pending_action``: approve, reject or tool_output for a ``tool_approval``; text for
    an ``input`` request."""

    action = serializers.ChoiceField(
        choices=["approve", "reject", "tool_output", "text"],
        help_text="approve: run the tool; reject: the model is told it was rejected (and why); tool_output: use "
        "`output` as the tool's result without running it; text: the text an `input` request asked for.",
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="With reject: why, for the model."
    )
    output = serializers.JSONField(required=False, allow_null=True, help_text="With tool_output: any JSON value.")
    text = serializers.CharField(max_length=20_000, required=False, help_text="With text: the answer.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        action = attrs["action"]
        given = set(self.initial_data) - {"action"}
        if extra := given - _RESPOND_FIELDS[action]:
            raise serializers.ValidationError({name: f"Not used with action {action!r}." for name in sorted(extra)})
        if missing := ({"output", "text"} & _RESPOND_FIELDS[action]) - given:
            raise serializers.ValidationError({name: f"Required with action {action!r}." for name in sorted(missing)})
        return attrs


# --- Artifacts ------------------------------------------------------------------------------------------------

ARTIFACT_EXAMPLE: dict[str, Any] = {
    "id": "5e6f7a8b-4444-4c2d-9e3f-4a5b6c7d8e9f",
    "job": JOB_EXAMPLE["id"],
    "kind": "file",
    "name": "Refund policy summary",
    "data": {"title": "Refund policy summary"},
    "media_type": "text/plain; charset=utf-8",
    "size": 412,
    "url": "/api/v1/acme/jobs/0f8e5a52-4a51-4b8e-9d53-5b2f0c6f3c11/artifacts/"
    "5e6f7a8b-4444-4c2d-9e3f-4a5b6c7d8e9f/content",
    "created_at": "2025-01-01T12:00:00.300000Z",
    "updated_at": "2025-01-01T12:00:00.300000Z",
}
TASK_LIST_ARTIFACT_EXAMPLE: dict[str, Any] = {
    **ARTIFACT_EXAMPLE,
    "id": "6f7a8b9c-5555-4d3e-8f4a-5b6c7d8e9f0a",
    "kind": "task_list",
    "name": "plan",
    "data": {"tasks": [{"title": "Find the policy", "done": True}, {"title": "Summarise it", "done": False}]},
    "media_type": "",
    "size": 0,
    "url": None,
}


@extend_schema_serializer(
    examples=[
        OpenApiExample("A file", value=ARTIFACT_EXAMPLE, response_only=True),
        OpenApiExample("A task list", value=TASK_LIST_ARTIFACT_EXAMPLE, response_only=True),
    ]
)
class ArtifactSerializer(serializers.ModelSerializer):
    """Something a job published; ``artifact.updated`` events carry the same fields (without the timestamps)."""

    kind = serializers.ChoiceField(choices=ArtifactKind.choices, read_only=True)
    size = serializers.IntegerField(read_only=True, help_text="Bytes of the file; 0 without one.")
    url = serializers.SerializerMethodField(help_text="Where the file downloads; null when the artifact has none.")

    class Meta:
        model = Artifact
        fields = ["id", "job", "kind", "name", "data", "media_type", "size", "url", "created_at", "updated_at"]
        read_only_fields = fields
        # Not declared as a field attribute: ``data`` would read as Serializer.data to type checkers.
        extra_kwargs = {"data": {"help_text": "What the agent attached: citations, tasks, a title."}}

    def get_url(self, artifact: Artifact) -> str | None:
        return artifact_content_url(artifact)


# --- The job's UI state and final report ----------------------------------------------------------------------

JOB_STATE_EXAMPLE: dict[str, Any] = {
    "id": JOB_EXAMPLE["id"],
    "thread": THREAD_EXAMPLE_ID,
    "status": "running",
    "step": "llm.started",
    "progress": None,
    "last_event_id": 7,
    "partial_output": "Refunds are accepted within",
    "pending_action": None,
}
JOB_STATE_FINISHED_EXAMPLE: dict[str, Any] = {
    **JOB_STATE_EXAMPLE,
    "status": "succeeded",
    "step": "job.succeeded",
    "last_event_id": 12,
    "partial_output": "Refunds are accepted within 30 days [1].",
}


@extend_schema_serializer(
    examples=[
        OpenApiExample("A job writing its answer", value=JOB_STATE_EXAMPLE, response_only=True),
        OpenApiExample("A finished job", value=JOB_STATE_FINISHED_EXAMPLE, response_only=True),
    ]
)
class JobStateSerializer(serializers.Serializer):
    """Where a job stands now (jobs.selectors.job_state): what a UI that polls needs to draw it."""

    id = serializers.UUIDField()
    thread = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    step = serializers.CharField(
        allow_null=True,
        help_text="The type of the job's latest step event (job.queued, job.started, llm.started, tool.started, "
        "tool.completed, retrieval.completed, handoff, job.requires_action, job.succeeded ...); null before any.",
    )
    progress = serializers.JSONField(
        allow_null=True, help_text="The `progress` of the job's latest event that carries one; null when none does."
    )
    last_event_id = serializers.IntegerField(
        allow_null=True,
        help_text="The sequence number of the job's latest event on its thread: stream on from it with "
        "`Last-Event-ID`. Null before any.",
    )
    partial_output = serializers.CharField(
        allow_blank=True,
        help_text="The answer's text so far: the text of the `llm.chunk` deltas since the latest `llm.started` "
        "while the job runs, the final output's text once it has one.",
    )
    pending_action = serializers.JSONField(
        allow_null=True, help_text="While requires_action, what the job waits for (as on the job); null otherwise."
    )


class JobTimingsSerializer(serializers.Serializer):
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    queued_seconds = serializers.FloatField(
        allow_null=True, help_text="From submission to the start; null for a job that never started."
    )
    run_seconds = serializers.FloatField(
        allow_null=True, help_text="From the start to the end; null for a job that never started."
    )


JOB_REPORT_EXAMPLE: dict[str, Any] = {
    "id": JOB_EXAMPLE["id"],
    "thread": THREAD_EXAMPLE_ID,
    "status": "succeeded",
    "output": [
        {"type": "text", "text": "Refunds are accepted within 30 days [1]."},
        {
            "type": "citation",
            "document_id": "9a8b7c6d-6666-4e5f-8a9b-0c1d2e3f4a5b",
            "chunk_id": "1b2c3d4e-7777-4f5a-9b0c-1d2e3f4a5b6c",
            "text": "Refunds are accepted within 30 days of delivery.",
            "score": 0.82,
            "title": "Refund policy",
        },
    ],
    "output_text": "Refunds are accepted within 30 days [1].",
    "output_message": JOB_EXAMPLE["output"]["message"],
    "citations": [
        {
            "type": "citation",
            "document_id": "9a8b7c6d-6666-4e5f-8a9b-0c1d2e3f4a5b",
            "chunk_id": "1b2c3d4e-7777-4f5a-9b0c-1d2e3f4a5b6c",
            "text": "Refunds are accepted within 30 days of delivery.",
            "score": 0.82,
            "title": "Refund policy",
        }
    ],
    "artifacts": [ARTIFACT_EXAMPLE],
    "usage": JOB_EXAMPLE["usage"],
    "cost": JOB_EXAMPLE["usage"]["cost"],
    "currency": "USD",
    "error": None,
    "results_purged_at": None,
    "timings": {
        "created_at": JOB_EXAMPLE["created_at"],
        "started_at": JOB_EXAMPLE["started_at"],
        "finished_at": JOB_EXAMPLE["finished_at"],
        "queued_seconds": 0.05,
        "run_seconds": 0.37,
    },
}


@extend_schema_serializer(examples=[OpenApiExample("A finished job", value=JOB_REPORT_EXAMPLE, response_only=True)])
class JobReportSerializer(serializers.Serializer):
    """The final report of an ended job (jobs.selectors.job_report)."""

    id = serializers.UUIDField()
    thread = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    output = serializers.JSONField(help_text="The reply's content blocks; empty when the job did not succeed.")
    output_text = serializers.CharField(allow_blank=True, help_text="The text of the reply's text blocks.")
    output_message = serializers.UUIDField(allow_null=True, help_text="The id of the reply on the thread.")
    citations = serializers.ListField(
        child=serializers.DictField(),
        help_text="The reply's `citation` blocks (document_id, chunk_id, text, score, title), in order. Citations "
        "an agent published as an artifact are in `artifacts`, kind `citation`.",
    )
    artifacts = ArtifactSerializer(many=True, help_text="What the job published, as GET jobs/{id}/artifacts lists it.")
    usage = serializers.JSONField(
        help_text="input_tokens, output_tokens, total_tokens, cost, currency and model, as on the job."
    )
    cost = serializers.FloatField(allow_null=True, help_text="The job's cost at the model catalogue's prices.")
    currency = serializers.CharField(allow_null=True)
    error = serializers.JSONField(allow_null=True, help_text="Problem details when the job failed.")
    results_purged_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the janitor purged the output and artifacts (past the job's expiry and the retention "
        "period): then both are empty here. Null while they are kept.",
    )
    timings = JobTimingsSerializer()
