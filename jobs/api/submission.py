"""What every route that starts a job from a message shares: the Idempotency-Key header, the request fields,
the wait and stream query, the submission itself and the 202/200 answer (or the job's event stream).

Three routes start a job from a message: ``POST jobs/`` (the content is called ``input``, ``agent`` and
``thread`` in the body), ``POST agents/{slug}/messages`` (``thread`` in the body, ``?wait=``) and
``POST threads/{id}/messages/`` (``agent`` optional, ``?wait=``). They differ only in those documented ways; the
rest lives here so that a fix or a new field reaches all three at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import Agent
from agents.providers.base import ClientConfig
from aihub.access.api.serializers import StrictSerializer
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer, openapi_30_schema
from aihub.db import db_call
from jobs.attachments import job_submit_with_attachments
from jobs.models import Job
from jobs.selectors import JOB_WAIT_MAX_SECONDS, job_wait
from threads.content import content_adapter, validate_content
from threads.models import Thread
from threads.sse import CANCEL_ON_DISCONNECT_HELP, STREAM_EXAMPLE, STREAM_SCHEMA, job_stream_response

if TYPE_CHECKING:
    from aihub.access.principal import Principal

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


def _content_field_schema() -> dict[str, Any]:
    # Inlined: spectacular does not know pydantic's $defs, and refs to them would dangle.
    schema = content_adapter.json_schema()
    defs = schema.pop("$defs", {})
    return {
        "oneOf": [{"type": "string", "description": "Shorthand for one text block."}, openapi_30_schema(schema, defs)],
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

JOB_EXPIRY_MIN_SECONDS = 600
"""The shortest ``expiry_seconds``: AI-Q's lower bound, kept so that a request written for AI-Q means the same."""

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


class AttachmentSerializer(serializers.Serializer):
    file = serializers.UUIDField(help_text="The id of a file you uploaded (POST files/) in this tenant.")

    def to_internal_value(self, data: Any) -> Any:
        # Strict like StrictSerializer, which a nested serializer cannot be (it has no initial_data).
        if isinstance(data, dict) and (unknown := set(data) - set(self.fields)):
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return super().to_internal_value(data)


class ChatHistoryMessageSerializer(serializers.Serializer):
    """One message of a supplied ``chat_history`` (documentation: jobs.turns checks it, naming each field)."""

    role = serializers.ChoiceField(choices=["user", "assistant", "system", "tool"])
    content = ContentField(help_text="A string, or content blocks as a thread's messages have them.")
    agent = serializers.CharField(
        required=False, allow_null=True, help_text="The agent that wrote it (or, for a user's message, was asked)."
    )
    caller_agent = serializers.CharField(
        required=False, allow_null=True, help_text="The agent that called `agent`, in a multi-agent conversation."
    )
    timestamp = serializers.DateTimeField(required=False, allow_null=True)


@extend_schema_field(ChatHistoryMessageSerializer(many=True))
class ChatHistoryField(serializers.JSONField):
    """Parsed as JSON and checked by the service (jobs.turns.chat_history_checked), which names each field."""


CHAT_HISTORY_HELP = (
    "A stateless turn: the conversation so far, oldest first, kept by the client instead of a thread. The agent "
    "sees it as a thread's history; the turn runs on an ephemeral thread that is never listed and is purged "
    "JOBS_STATELESS_RETENTION_SECONDS after the job ends (the history itself leaves the job's row as it ends). "
    "The answer (wait=true, and the final stream event) adds `new_messages`, `file_ids_map` and `cost`. Bounded "
    "by JOBS_CHAT_HISTORY_MAX_MESSAGES and JOBS_CHAT_HISTORY_MAX_BYTES; not with `thread`."
)

HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"


class ClientConfigSerializer(serializers.Serializer):
    """The request's own OpenAI-compatible endpoint for this job's model calls. Never stored, logged or shown."""

    base_url = serializers.CharField(
        max_length=2000, help_text="Must start with a prefix of the operator's AIHUB_CLIENT_CONFIG_URL_ALLOWLIST."
    )
    api_key = serializers.CharField(max_length=4096, write_only=True, trim_whitespace=True)
    default_headers = serializers.DictField(
        child=serializers.CharField(max_length=4096, allow_blank=True),
        required=False,
        default=dict,
        help_text="Sent with every model call of the job (kept secret like the key).",
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and (unknown := set(data) - set(self.fields)):
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return super().to_internal_value(data)

    def validate_default_headers(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise serializers.ValidationError("At most 20 headers.")
        for name, header in value.items():
            # The value is never quoted back: it may be a credential.
            if not re.match(HEADER_NAME, name) or any(c in header for c in "\r\n\x00"):
                raise serializers.ValidationError(f"Header {name[:100]!r} is not a valid header name and value.")
        return value


CLIENT_CONFIG_RESOURCE = "client-config"
"""The permission rule's resource: ``aihub.user.client-config`` lets a caller bring its own model credentials."""


def client_config_allowed(principal: Principal) -> bool:
    """Whether the caller may send ``client_config``: only by a rule that names the resource itself.

    Off by default: the default roles' ``aihub.user.>`` and ``aihub.admin.>`` do not grant it (sending a
    tenant's jobs to any endpoint with any key is a decision an operator makes on purpose), so a role needs the
    rule ``aihub.user.client-config`` (or ``aihub.admin.client-config``) by name; the tenant's ceiling still
    applies.
    """
    named = any(rule.split(".")[2:3] == [CLIENT_CONFIG_RESOURCE] for rule in principal.rules)
    return named and principal.can("user", CLIENT_CONFIG_RESOURCE)


class MessageSubmitSerializer(StrictSerializer):
    """The fields every job-starting route takes: the content, attachments, file_urls, busy,
    additional_instructions, context, job_id, chat_history (with store_thread) and client_config.

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
    attachments = AttachmentSerializer(
        many=True,
        required=False,
        default=list,
        help_text="Files you uploaded before (POST files/), by id. Images reach models that accept images; the "
        "text of documents is given to the model with the file's name.",
    )
    file_urls = serializers.ListField(
        child=serializers.CharField(max_length=2000),
        required=False,
        default=list,
        help_text="URLs fetched by the server into files of yours and attached like `attachments`; only from the "
        "hosts and folders the operator allowlisted (AIHUB_FILE_URL_ALLOWLIST). A URL that may not or could not "
        "be fetched is a 400 naming it, and nothing is stored.",
    )

    webhook = serializers.CharField(
        max_length=2000,
        required=False,
        default="",
        allow_blank=True,
        help_text="A URL the job's final state is POSTed to, signed with HMAC-SHA256 (X-Aihub-Signature over "
        "X-Aihub-Timestamp and the body) and retried with backoff; only under the operator's "
        "AIHUB_WEBHOOK_URL_ALLOWLIST. Attempts: GET jobs/{id}/webhook-deliveries.",
    )

    chat_history = ChatHistoryField(required=False, default=None, allow_null=True, help_text=CHAT_HISTORY_HELP)
    store_thread = serializers.BooleanField(
        required=False,
        default=False,
        help_text="With chat_history: store it as a new thread's first messages and run the turn there (a normal, "
        "listed thread to continue on) instead of on an ephemeral one.",
    )
    client_config = ClientConfigSerializer(
        required=False,
        default=None,
        allow_null=True,
        help_text="This job's model calls go to this OpenAI-compatible endpoint with this key instead of the "
        "operator's provider. Needs the rule `aihub.user.client-config` (granted by no default role); the key is "
        "sealed for the worker and deleted when the job ends, never stored, logged or shown.",
    )

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
            if not attrs.get("attachments") and not attrs.get("file_urls"):
                raise serializers.ValidationError({name: ["A message needs some content or an attachment."]})
            attrs["content"] = []
            return attrs
        try:
            attrs["content"] = validate_content(content)
        except PydanticValidationError as exc:
            raise serializers.ValidationError(content_errors(content, exc, field=name)) from exc
        return attrs


class ExpirySerializer(serializers.Serializer):
    """``expires_in_seconds``, ``expiry_seconds`` or ``expires_at``; validated data has ``expires_at`` (None: never).

    ``expiry_seconds`` is AI-Q's name for the seconds, with AI-Q's bounds (600 to 604,800), so that a client
    written for AI-Q submits unchanged; it means what ``expires_in_seconds`` means. ``expiry_fields`` lists those
    a route accepts (the threads route takes only the seconds). Put it before MessageSubmitSerializer in the
    bases: StrictSerializer.validate ends the chain of ``super().validate``.
    """

    expiry_fields: ClassVar[tuple[str, ...]] = ("expires_in_seconds", "expiry_seconds", "expires_at")

    expires_in_seconds = serializers.IntegerField(
        min_value=1,
        max_value=JOB_EXPIRES_MAX_SECONDS,
        required=False,
        allow_null=True,
        help_text="A job still waiting for a worker (or for an answer) this long after submission expires.",
    )
    expiry_seconds = serializers.IntegerField(
        min_value=JOB_EXPIRY_MIN_SECONDS,
        max_value=JOB_EXPIRES_MAX_SECONDS,
        required=False,
        allow_null=True,
        help_text="AI-Q's name for `expires_in_seconds`, with AI-Q's bounds "
        f"({JOB_EXPIRY_MIN_SECONDS} to {JOB_EXPIRES_MAX_SECONDS:,}); give one of the two. The job's `expires_at` "
        "shows the deadline.",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="A job still waiting then expires; give this or the seconds."
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in {"expires_in_seconds", "expiry_seconds", "expires_at"} - set(self.expiry_fields):
            del fields[name]
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        given = [name for name in self.expiry_fields if attrs.get(name) is not None]
        if len(given) > 1:
            # Named by the last one given, so a client sees which of its fields to drop.
            raise serializers.ValidationError({given[-1]: f"Give only one of {', '.join(self.expiry_fields)}."})
        seconds = attrs.pop("expires_in_seconds", None)
        if (aiq_seconds := attrs.pop("expiry_seconds", None)) is not None:
            seconds = aiq_seconds
        at: datetime | None = attrs.get("expires_at")
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
    principal: Principal,
) -> tuple[Job, bool]:
    """Start the job for a parsed MessageSubmitSerializer body; returns (job, created) like job_submit."""
    config = body.get("client_config")
    if config is not None and not client_config_allowed(principal):
        raise exceptions.PermissionDenied(
            "Your roles do not allow client_config (bringing your own model credentials): it needs the rule "
            f"aihub.user.{CLIENT_CONFIG_RESOURCE}."
        )
    extra: dict[str, Any] = {}
    if body.get("chat_history") is not None:
        extra.update(chat_history=body["chat_history"], store_thread=body.get("store_thread", False))
    elif body.get("store_thread"):
        extra["store_thread"] = True
    if config is not None:
        extra["client_config"] = ClientConfig(
            base_url=config["base_url"], api_key=config["api_key"], default_headers=config["default_headers"]
        )
    return job_submit_with_attachments(
        agent=agent,
        user=user,
        content=body["content"],
        attachments=[item["file"] for item in body.get("attachments", [])],
        file_urls=body.get("file_urls", []),
        thread=thread,
        busy=body["busy"],
        idempotency_key=idempotency_key,
        additional_instructions=body["additional_instructions"],
        context=body["context"],
        expires_at=body.get("expires_at"),
        job_id=body["job_id"],
        webhook=body.get("webhook", ""),
        **extra,
    )


@dataclass(frozen=True)
class Submitted:
    """A message route's work before it answers: the job, whether it is new, the parsed wait/stream query."""

    job: Job
    created: bool
    query: dict[str, Any]


async def answer_submitted(submitted: Submitted, *, body: Callable[[Job], Any]) -> HttpResponseBase:
    """The answer of a message route: the job's stream (``stream=true``), or the job as ``body`` renders it —
    after waiting for it with ``wait=true`` — with 202 while it is under way and 200 once it ended.

    The wait sleeps on the channel layer (jobs.selectors.job_wait) with no thread or connection held; the
    database is read in short calls around it.
    """
    job, query = submitted.job, submitted.query
    if query["stream"]:
        return await db_call(streamed_response, job, query)
    if query["wait"] and not job.is_final:
        await job_wait(job=job, timeout=query["timeout"])
        return await db_call(_answer_fresh, job, body, created=submitted.created)
    return await db_call(_answer, job, body, created=submitted.created)


def _answer(job: Job, body: Callable[[Job], Any], *, created: bool) -> Response:
    return submitted_response(job, body(job), created=created)


def _answer_fresh(job: Job, body: Callable[[Job], Any], *, created: bool) -> Response:
    fresh = Job.objects.select_related("agent", "thread").get(pk=job.pk)
    fresh.usage_warnings, fresh.first_event_id = job.usage_warnings, job.first_event_id  # the submission's own
    return _answer(fresh, body, created=created)


USAGE_WARNING_HEADER = "X-Usage-Warning"


def usage_warning_headers(job: Job) -> dict[str, str]:
    """``X-Usage-Warning`` when the job brought a usage limit of the caller near its end: one entry per limit,
    ``<limit>; role=<role>; used=<share 0..1>; resets=<time>``, comma-separated."""
    if not job.usage_warnings:
        return {}
    return {USAGE_WARNING_HEADER: ", ".join(state.header() for state in job.usage_warnings)}


def submitted_response(job: Job, data: Any, *, created: bool, headers: dict[str, str] | None = None) -> Response:
    """202 for a new job still under way; 200 once it ended, or for a retry (the first job, as it stands)."""
    code = status.HTTP_200_OK if job.is_final or not created else status.HTTP_202_ACCEPTED
    return Response(data, status=code, headers={**(headers or {}), **usage_warning_headers(job)})


def streamed_response(job: Job, query: dict[str, Any]) -> HttpResponse | StreamingHttpResponse:
    """The answer to ``?stream=true``: the job's event stream from its first event (the caller's message)."""
    response = job_stream_response(job, cancel_on_disconnect=query["cancel_on_disconnect"], with_input_message=True)
    for name, value in usage_warning_headers(job).items():
        response[name] = value
    return response


STREAMED_RESPONSE: dict[Any, OpenApiResponse] = {
    (200, "text/event-stream"): OpenApiResponse(
        STREAM_SCHEMA,
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
    ),
    (429, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        ProblemSerializer,
        description="A usage limit of one of your roles is used up (`urn:aihub:problem:usage-limit-exceeded`): "
        "the problem's `limit` names it and when it resets; `Retry-After` says in how many seconds. Responses "
        "that bring a limit near its end carry `X-Usage-Warning`.",
        examples=[
            OpenApiExample(
                "Usage limit reached",
                status_codes=[429],
                value={
                    "type": "urn:aihub:problem:usage-limit-exceeded",
                    "title": "Usage limit reached",
                    "status": 429,
                    "detail": "The usage limit 'daily-tokens' of role 'member' (100000 tokens per 1d on agents "
                    "matching '>') is used up: 100412 used and 0 reserved by running jobs. It resets at "
                    "2026-11-26T00:00:00Z.",
                    "instance": "/api/v1/acme/agents/assistant/messages",
                    "correlation_id": "b93660d86a8442b5bc6afda2eca27b14",
                    "limit": {
                        "id": "5f0c6a4e-0d7b-4a59-9a43-0c1f1f7f3b11",
                        "name": "daily-tokens",
                        "role": "member",
                        "target": "agents",
                        "pattern": ">",
                        "unit": "tokens",
                        "amount": 100000,
                        "period": "1d",
                        "used": 100412,
                        "reserved": 0,
                        "window_start": "2026-11-25T00:00:00Z",
                        "resets_at": "2026-11-26T00:00:00Z",
                    },
                },
            )
        ],
    ),
}

RETRIED_DESCRIPTION = "A retry with an Idempotency-Key or `job_id` already used: the first job, as it stands."
