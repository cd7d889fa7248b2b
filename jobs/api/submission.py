"""What every route that starts a job from a message shares: the Idempotency-Key header, the request fields,
the wait and stream query, the submission itself and the 202/200 answer (or the job's event stream).

Three routes start a job from a message: ``POST jobs/`` (the content is called ``input``, ``agent`` and
``thread`` in the body), ``POST agents/{slug}/messages`` (``thread`` in the body, ``?wait=``) and
``POST threads/{id}/messages/`` (``agent`` optional, ``?wait=``). They differ only in those documented ways; the
rest lives here so that a fix or a new field reaches all three at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import Agent
from aihub.access.api.serializers import StrictSerializer
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer
from jobs.models import Job
from jobs.selectors import JOB_WAIT_MAX_SECONDS, job_wait
from jobs.services import job_submit
from threads.content import content_adapter, validate_content
from threads.models import Thread
from threads.sse import CANCEL_ON_DISCONNECT_HELP, STREAM_EXAMPLE, job_stream_response

# --- The Idempotency-Key header ---------------------------------------------------------------------------------

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 200
"""The column's length (jobs.Job.idempotency_key): a longer key could not be stored."""

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Send the same key again (same user, same tenant), e.g. on a retry, and get the first job back "
    f"with 200, without a second job being started. Up to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.",
)


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, None when absent or empty; a 400 naming the header when too long."""
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER) or None
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise exceptions.ValidationError(
            {IDEMPOTENCY_KEY_HEADER: f"Ensure this header has no more than {IDEMPOTENCY_KEY_MAX_LENGTH} characters."}
        )
    return key


# --- Content ----------------------------------------------------------------------------------------------------


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


def content_errors(content: Any, exc: PydanticValidationError, *, field: str = "content") -> dict[str, list[str]]:
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
        name = field
        for part in location:
            name += f"[{part}]" if isinstance(part, int) else f".{part}"
        errors.setdefault(name, []).append(str(error["msg"]))
    return errors


# --- The request body -------------------------------------------------------------------------------------------

JOB_EXPIRES_MAX_SECONDS = 7 * 24 * 3600
"""The longest a job may wait to start (or for an answer)."""

JOB_ID_HELP = (
    "A UUID you choose for the job: a retry with the same id (same user, same agent) returns that job with 200 "
    "and starts nothing; the id already used by someone else or for another agent is a 409."
)


def thread_field() -> serializers.UUIDField:
    """``thread`` in the body (jobs and agents routes; the threads route has it in the path)."""
    return serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text="A thread to continue; a new thread when absent."
    )


def agent_field(*, required: bool, help_text: str) -> serializers.SlugField:
    """``agent`` in the body (jobs route: required; threads route: optional; agents route: in the path)."""
    return serializers.SlugField(max_length=63, required=required, help_text=help_text)


class MessageSubmitSerializer(StrictSerializer):
    """The fields every job-starting route takes: the content, busy, additional_instructions, context, job_id.

    ``content_field`` names the content in the body (the jobs route calls it ``input``); validated data always
    has it as ``content``, the name job_submit takes.
    """

    content_field: ClassVar[str] = "content"

    busy = serializers.ChoiceField(
        choices=["reject", "enqueue", "interrupt"],
        default="reject",
        help_text="When the thread has an active job: answer 409 (reject), queue behind it (enqueue), or cancel it "
        "(interrupt).",
    )
    additional_instructions = serializers.CharField(
        max_length=20_000, required=False, default="", allow_blank=True, help_text="Added to the prompt of this job."
    )
    job_id = serializers.UUIDField(required=False, allow_null=True, default=None, help_text=JOB_ID_HELP)

    def get_fields(self) -> dict[str, serializers.Field]:
        # Added here, not as attributes: the content's name differs per route, and a class attribute named
        # ``context`` would hide Serializer.context.
        fields = super().get_fields()
        fields[self.content_field] = ContentField(
            help_text="The message: a string, or a list of content blocks (text, image, file, ...)."
        )
        fields["context"] = JsonObjectField(
            required=False,
            default=dict,
            help_text="Handed to tools; the model never sees it (ids, the caller's locale).",
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        name = self.content_field
        content = attrs.pop(name)
        if content == "" or content == []:
            raise serializers.ValidationError({name: ["A message needs some content."]})
        try:
            attrs["content"] = validate_content(content)
        except PydanticValidationError as exc:
            raise serializers.ValidationError(content_errors(content, exc, field=name)) from exc
        return attrs


class ExpirySerializer(serializers.Serializer):
    """``expires_in_seconds`` or ``expires_at``; validated data has ``expires_at`` (None: never).

    ``expiry_fields`` lists those a route accepts (the threads route takes only the seconds). Put it before
    MessageSubmitSerializer in the bases: StrictSerializer.validate ends the chain of ``super().validate``.
    """

    expiry_fields: ClassVar[tuple[str, ...]] = ("expires_in_seconds", "expires_at")

    expires_in_seconds = serializers.IntegerField(
        min_value=1,
        max_value=JOB_EXPIRES_MAX_SECONDS,
        required=False,
        allow_null=True,
        help_text="A job still waiting for a worker (or for an answer) this long after submission expires.",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="A job still waiting then expires; give this or the seconds."
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in {"expires_in_seconds", "expires_at"} - set(self.expiry_fields):
            del fields[name]
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        seconds = attrs.pop("expires_in_seconds", None)
        at: datetime | None = attrs.get("expires_at")
        if seconds is not None and at is not None:
            raise serializers.ValidationError({"expires_at": "Give expires_in_seconds or expires_at, not both."})
        if seconds is not None:
            at = timezone.now() + timedelta(seconds=seconds)
        elif at is not None and at <= timezone.now():
            raise serializers.ValidationError({"expires_at": "This time has passed."})
        attrs["expires_at"] = at
        return attrs


class WaitQuerySerializer(serializers.Serializer):
    """``?wait=true&timeout=`` or ``?stream=true&cancel_on_disconnect=`` of the agents and threads message
    routes. Parsed before the job is submitted, so a bad combination starts nothing."""

    wait = serializers.BooleanField(
        required=False, default=False, help_text="Wait for the job to end (or ask for action) before answering."
    )
    timeout = serializers.FloatField(
        min_value=0,
        max_value=JOB_WAIT_MAX_SECONDS,
        required=False,
        default=30.0,
        help_text=f"Seconds to wait with wait=true (default 30, at most {JOB_WAIT_MAX_SECONDS:g}); a job still "
        "running then is answered with 202.",
    )
    stream = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Answer with the job's server-sent events (text/event-stream, the same frames as "
        "`jobs/{id}/stream`), from the job's first event (this message) to its final one. Not with wait=true.",
    )
    cancel_on_disconnect = serializers.BooleanField(
        required=False, default=False, help_text=f"Only with stream=true. {CANCEL_ON_DISCONNECT_HELP}"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["stream"] and attrs["wait"]:
            raise serializers.ValidationError({"stream": "Give stream=true or wait=true, not both."})
        if attrs["cancel_on_disconnect"] and not attrs["stream"]:
            # Without a stream there is no disconnect to react to: a silently ignored flag would mislead.
            raise serializers.ValidationError({"cancel_on_disconnect": "Only with stream=true."})
        return attrs


def wait_query(request: Request) -> dict[str, Any]:
    query = WaitQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


# --- Submitting and answering -----------------------------------------------------------------------------------


def submit_message(
    body: dict[str, Any],
    *,
    agent: Agent,
    thread: Thread | None,
    user: Any,
    idempotency_key: str | None,
    wait: dict[str, Any] | None = None,
) -> tuple[Job, bool]:
    """Start the job for a parsed MessageSubmitSerializer body; returns (job, created) like job_submit.

    With ``wait`` (a parsed WaitQuerySerializer) whose ``wait`` is true, the job as it stands once it ended or
    the timeout passed.
    """
    job, created = job_submit(
        agent=agent,
        user=user,
        content=body["content"],
        thread=thread,
        busy=body["busy"],
        idempotency_key=idempotency_key,
        additional_instructions=body["additional_instructions"],
        context=body["context"],
        expires_at=body.get("expires_at"),
        job_id=body["job_id"],
    )
    if wait is not None and wait["wait"] and not job.is_final:
        job = job_wait(job_id=job.pk, timeout=wait["timeout"])
    return job, created


def submitted_response(job: Job, data: Any, *, created: bool, headers: dict[str, str] | None = None) -> Response:
    """202 for a new job still under way; 200 once it ended, or for a retry (the first job, as it stands)."""
    code = status.HTTP_200_OK if job.is_final or not created else status.HTTP_202_ACCEPTED
    return Response(data, status=code, headers=headers)


def streamed_response(job: Job, query: dict[str, Any]) -> HttpResponse | StreamingHttpResponse:
    """The answer to ``?stream=true``: the job's event stream from its first event (the caller's message)."""
    return job_stream_response(job, cancel_on_disconnect=query["cancel_on_disconnect"], with_input_message=True)


STREAMED_RESPONSE: dict[Any, OpenApiResponse] = {
    (200, "text/event-stream"): OpenApiResponse(
        OpenApiTypes.STR,
        description="With `stream=true`: the job's server-sent events, from its `message.created` to its final "
        "event, then the stream closes (the frames of `jobs/{id}/stream`).",
        examples=[OpenApiExample("A stream", value=STREAM_EXAMPLE, status_codes=[200])],
    )
}

SUBMIT_CONFLICT_RESPONSE: dict[Any, OpenApiResponse] = {
    (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        ProblemSerializer,
        description="The agent is disabled, the thread is busy and `busy` is `reject`, or the `job_id` is already "
        "taken by another caller or agent.",
    )
}

RETRIED_DESCRIPTION = "A retry with an Idempotency-Key or `job_id` already used: the first job, as it stands."
