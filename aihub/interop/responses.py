"""OpenAI's Responses API under ``/openai/v1/``, beside chat completions: a response is a job.

The same rules as :mod:`aihub.interop.openai_api` (a model is an agent, the API key an aihub token, errors in
OpenAI's shape) and the same write path: ``POST responses`` submits one turn with
:func:`aihub.interop.openai_api.request_turn_submit`, exactly as chat completions and
``POST /api/v1/{tenant}/agents/{slug}/messages`` do. What comes back is read from the job's event log (replayed
and followed live through :func:`aihub.interop.conversation.job_events`, waited on with ``job_wait``): there is
no store of responses, and no runtime of their own.

- The response id is ``resp_<job uuid hex>``, and any job the caller may see is a response. Its status is the
  job's: queued → ``queued``, running and requires_action → ``in_progress``, succeeded → ``completed``, failed →
  ``failed``, cancelled → ``cancelled``, expired → ``incomplete``.
- ``output`` is folded from the job's events: ``llm.chunk`` deltas make an assistant ``message`` item, each
  ``tool.started`` (a tool the agent ran itself) a completed ``function_call`` item; a job that answered without
  streaming gets one message with its reply. The stream is the same fold, event by event, numbered from 0, so a
  replay numbers every event the same: ``GET responses/{id}?stream=true&starting_after=N`` sends each event after
  N exactly once.
- ``previous_response_id`` continues that response's thread, ``conversation`` names a thread; ``instructions``
  (and earlier ``system``/``developer`` items) become the job's ``additional_instructions``; ``metadata`` is kept
  in the job's input. ``conversation.id`` of every response is its thread.
- ``background: true`` answers at once (``queued``); otherwise the answer waits for the job (at most
  ``JOB_WAIT_MAX_SECONDS``, then the response as it stands, ``in_progress``). Leaving a stream never stops the job.
- ``DELETE responses/{id}`` purges the job's results as the janitor does past their retention (cancelling it if
  still active): afterwards the response is 404, while its thread keeps the messages (they are the conversation).
  ``store: false`` deletes the response so once it has been answered (or streamed to its end).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Subquery
from django.http import Http404, HttpResponseBase, StreamingHttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access.principal import principal_for
from aihub.api.base import caller
from aihub.db import db_call
from aihub.interop.agents import default_principal
from aihub.interop.conversation import KEEP_ALIVE_EVENT, EarlierMessage, answer_text, job_events, usage_counts
from aihub.interop.openai_api import (
    JOB_HEADER,
    THREAD_HEADER,
    AsyncOpenAIView,
    OpenAIError,
    OpenAIView,
    _content_blocks,
    _invalid,
    _model,
    _requested_model,
    _type_error,
    request_turn_submit,
    thread_of,
)
from jobs.models import Job, JobStatus
from jobs.selectors import JOB_WAIT_MAX_SECONDS, job_get, job_wait
from jobs.services import job_cancel, job_results_delete
from threads.content import text_of
from threads.events import JOB_FINAL_EVENTS, event_payload
from threads.models import Message, MessageRole
from threads.selectors import event_list
from threads.sse import KEEP_ALIVE

RESPONSE_PREFIX = "resp_"
_RESPONSE_ID = re.compile(r"resp_(?P<hex>[0-9a-f]{32})")
INPUT_ROLES = ("user", "assistant", "system", "developer")
METADATA_MAX_KEYS, METADATA_KEY_MAX, METADATA_VALUE_MAX = 16, 64, 512
CANCEL_WAIT_SECONDS = 5.0
"""How long a cancel waits for a running job to stop (at the runner's next check) before answering."""
INPUT_ITEMS_MAX_LIMIT = 100

STATUSES = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.REQUIRES_ACTION: "in_progress",
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.EXPIRED: "incomplete",
}
# The Responses stream has no event of its own for a cancelled response: it ends incomplete, status cancelled.
TERMINAL_EVENTS = {
    "completed": "response.completed",
    "failed": "response.failed",
    "cancelled": "response.incomplete",
    "incomplete": "response.incomplete",
}


def response_id(job: Job) -> str:
    return f"{RESPONSE_PREFIX}{job.pk.hex}"


# --- The request ------------------------------------------------------------------------------------------------


@dataclass
class ResponsesRequest:
    model: str
    content: list[dict[str, Any]]
    earlier: list[EarlierMessage] = field(default_factory=list)
    instructions: str = ""
    stream: bool = False
    background: bool = False
    store: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None
    conversation: uuid.UUID | None = None


def _chat_parts(content: Any, param: str) -> Any:
    """Responses content parts as chat content parts, so the chat door's checks and image handling apply."""
    if not isinstance(content, list):
        return content  # a string, or a wrong type that _content_blocks words
    parts: list[Any] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _type_error(where, "an object", part)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part.get("text")})
        elif kind == "input_image":
            if part.get("file_id") and not part.get("image_url"):
                raise _invalid(
                    "Images are taken by 'image_url' (a web URL or a base64 data: URL), not by 'file_id'.",
                    f"{where}.file_id",
                    "unsupported_value",
                )
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": part.get("image_url"), "detail": part.get("detail") or "auto"},
                }
            )
        else:
            raise _invalid(
                f"Invalid value: '{kind}'. Supported values are: 'input_text', 'input_image' and 'output_text'.",
                f"{where}.type",
            )
    return parts


def _input_messages(raw: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    if raw is None:
        raise _invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if isinstance(raw, str):
        if not raw:
            raise _invalid("Invalid 'input': empty string.", "input", "empty_string")
        return [("user", [{"type": "text", "text": raw}])]
    if not isinstance(raw, list):
        raise _type_error("input", "one of a string or an array of input items", raw)
    if not raw:
        raise _invalid("Invalid 'input': empty array. Expected an array with minimum length 1.", "input", "empty_array")
    parsed = []
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _type_error(where, "an object", item)
        kind = item.get("type", "message")
        if kind == "function_call":
            continue  # a tool call the agent made and ran itself, sent back as history: nothing to run
        if kind != "message":
            raise _invalid(
                f"Invalid value: '{kind}'. Supported values are: 'message' (aihub's agents run their own tools).",
                f"{where}.type",
                "unsupported_value",
            )
        role = item.get("role")
        if role not in INPUT_ROLES:
            supported = ", ".join(f"'{r}'" for r in INPUT_ROLES)
            raise _invalid(f"Invalid value: '{role}'. Supported values are: {supported}.", f"{where}.role")
        content = _chat_parts(item.get("content"), f"{where}.content")
        parsed.append((role, _content_blocks(content, f"{where}.content", required=True)))
    return parsed


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _type_error(name, "a boolean", value)
    return value


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _type_error("metadata", "an object", raw)
    if len(raw) > METADATA_MAX_KEYS:
        raise _invalid(f"Invalid 'metadata': at most {METADATA_MAX_KEYS} keys.", "metadata", "object_above_max_length")
    for key, value in raw.items():
        if len(key) > METADATA_KEY_MAX:
            raise _invalid(f"Invalid 'metadata': keys are at most {METADATA_KEY_MAX} characters.", "metadata")
        if not isinstance(value, str):
            raise _type_error(f"metadata.{key}", "a string", value)
        if len(value) > METADATA_VALUE_MAX:
            raise _invalid(
                f"Invalid 'metadata': values are at most {METADATA_VALUE_MAX} characters.", f"metadata.{key}"
            )
    return dict(raw)


def _conversation(raw: Any) -> uuid.UUID | None:
    if raw is None:
        return None
    ref = raw.get("id") if isinstance(raw, dict) else raw
    if not isinstance(ref, str):
        raise _type_error("conversation", "a string or an object with an 'id'", raw)
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise _invalid(f"Invalid 'conversation': '{ref}' is not a thread id.", "conversation") from None


def parse_responses_request(data: Any) -> ResponsesRequest:
    """The request as OpenAI validates it (same messages, params and codes), then what aihub needs of it."""
    model = _requested_model(data)
    parsed = _input_messages(data.get("input"))
    last_role, content = parsed[-1] if parsed else ("", [])
    if last_role != "user" or not content:
        raise _invalid(
            "The last input item must be a message from the user: an agent answers a user's message.", "input"
        )
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _type_error("instructions", "a string", instructions)
    system = [text_of(blocks) for role, blocks in parsed[:-1] if role in ("system", "developer")]
    earlier = [
        EarlierMessage(role=MessageRole(role), content=blocks)
        for role, blocks in parsed[:-1]
        if role in ("user", "assistant") and blocks
    ]
    previous = data.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise _type_error("previous_response_id", "a string", previous)
    conversation = _conversation(data.get("conversation"))
    if previous and conversation:
        raise _invalid(
            "Mutually exclusive parameters: 'previous_response_id' and 'conversation'. Send one of them.",
            "previous_response_id",
            "mutually_exclusive_parameters",
        )
    request = ResponsesRequest(
        model=model,
        content=content,
        earlier=earlier,
        instructions="\n\n".join(text for text in [instructions or "", *system] if text),
        stream=_flag(data, "stream", False),
        background=_flag(data, "background", False),
        store=_flag(data, "store", True),
        metadata=_metadata(data.get("metadata")),
        previous_response_id=previous or None,
        conversation=conversation,
    )
    if request.background and not request.store:
        raise _invalid("Background responses must be stored: send store=true (the default).", "store")
    return request


# --- Finding a response ---------------------------------------------------------------------------------------


def response_job(request: Request, ref: str, *, param: str | None = None, what: str = "Response") -> Job:
    """The job a response id names, if the caller may see it and it was not deleted; 404 otherwise (another
    tenant's response, a malformed id and a deleted one all look the same)."""
    not_found = OpenAIError(f"{what} with id '{ref}' not found.", status=404, param=param, code="not_found")
    match = _RESPONSE_ID.fullmatch(ref)
    if match is None:
        raise not_found
    job_id = uuid.UUID(hex=match["hex"])
    tenant = Job.objects.filter(pk=job_id).values_list("tenant__slug", flat=True).first()
    if tenant is None:
        raise not_found
    try:
        principal = principal_for(user=caller(request), tenant_ref=tenant, auth=request.auth)
        job = job_get(principal=principal, job_id=job_id)
    except (Http404, PermissionDenied):
        raise not_found from None
    if job.results_purged_at is not None:
        raise not_found
    return job


def _default_tenant_id(request: Request) -> uuid.UUID | None:
    try:
        return default_principal(user=caller(request), auth=request.auth).tenant.pk
    except Http404:
        return None


def response_base(job: Job, *, default_tenant_id: uuid.UUID | None, background: bool | None = None) -> dict[str, Any]:
    """What a response says of itself whatever its progress: all but status, output, usage and the end."""
    previous = (
        Job.objects.filter(thread_id=job.thread_id, created_at__lt=job.created_at)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    model = job.agent.slug if job.tenant_id == default_tenant_id else f"{job.tenant.slug}/{job.agent.slug}"
    return {
        "id": response_id(job),
        "object": "response",
        "created_at": int(job.created_at.timestamp()),
        "status": "queued",
        "background": background,
        "completed_at": None,
        "conversation": {"id": str(job.thread_id)},
        "error": None,
        "incomplete_details": None,
        "instructions": job.input.get("additional_instructions") or None,
        "max_output_tokens": None,
        "metadata": job.input.get("metadata") or {},
        "model": model,
        "output": [],
        "parallel_tool_calls": False,
        "previous_response_id": f"{RESPONSE_PREFIX}{previous.hex}" if previous else None,
        "store": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }


def usage_object(job: Job) -> dict[str, Any]:
    prompt, completion, total = usage_counts(job)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": total,
    }


# --- From events to output items and stream events ---------------------------------------------------------------


class ResponseEvents:
    """The Responses stream made from one job's events, fed one at a time, and the output items it builds.

    A function of the job's event log (and, at the end, its final row) only: a replay gives every event the same
    ``sequence_number``, which is what lets ``starting_after`` resume a stream exactly once.
    """

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.output: list[dict[str, Any]] = []
        self.status = "queued"
        self.sequence = -1
        self._created = self._started = False
        self._message: int | None = None  # the index of the message item text is going to

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence, **fields}

    def snapshot(self, **end: Any) -> dict[str, Any]:
        return {**self.base, "status": self.status, "output": copy.deepcopy(self.output), **end}

    def _begin(self) -> list[dict[str, Any]]:
        if self._created:
            return []
        self._created = True
        return [self._event("response.created", response=self.snapshot())]

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind, data = event["type"], event.get("data") or {}
        if kind == "stream.mode":
            return []  # where the replay turned live depends on the connection, not on the log
        frames = self._begin()
        if kind == "job.started" and not self._started:
            self._started, self.status = True, "in_progress"
            frames.append(self._event("response.in_progress", response=self.snapshot()))
        elif kind == "llm.chunk" and data.get("delta"):
            frames += self._text(str(data["delta"]))
        elif kind == "tool.started":
            frames += self._close_message() + self._function_call(data)
        return frames

    def _item_id(self, prefix: str, index: int) -> str:
        return f"{prefix}_{self.base['id'].removeprefix(RESPONSE_PREFIX)}_{index}"

    def _text(self, delta: str) -> list[dict[str, Any]]:
        frames = []
        if self._message is None:
            index = self._message = len(self.output)
            item: dict[str, Any] = {
                "id": self._item_id("msg", index),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
            }
            self.output.append({**item, "content": []})
            frames.append(self._event("response.output_item.added", output_index=index, item={**item, "content": []}))
            part = {"type": "output_text", "text": "", "annotations": []}
            self.output[index]["content"].append(dict(part))
            frames.append(
                self._event(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        index = self._message
        current = self.output[index]
        current["content"][0]["text"] += delta
        frames.append(
            self._event(
                "response.output_text.delta",
                item_id=current["id"],
                output_index=index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return frames

    def _close_message(self) -> list[dict[str, Any]]:
        if self._message is None:
            return []
        index, self._message = self._message, None
        item = self.output[index]
        item["status"] = "completed"
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=part["text"], logprobs=[]),
            self._event("response.content_part.done", **where, part=dict(part)),
            self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)),
        ]

    def _function_call(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = len(self.output)
        raw = data.get("arguments")
        arguments = raw if isinstance(raw, str) else json.dumps(raw if raw is not None else {})
        item = {
            "id": self._item_id("fc", index),
            "type": "function_call",
            "status": "in_progress",
            "call_id": str(data.get("id") or self._item_id("call", index)),
            "name": str(data.get("name") or ""),
            "arguments": "",
        }
        self.output.append(item)
        frames = [self._event("response.output_item.added", output_index=index, item=dict(item))]
        where = {"item_id": item["id"], "output_index": index}
        frames.append(self._event("response.function_call_arguments.delta", **where, delta=arguments))
        item.update(arguments=arguments, status="completed")
        frames.append(self._event("response.function_call_arguments.done", **where, arguments=arguments))
        frames.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return frames

    def finish(self, job: Job) -> list[dict[str, Any]]:
        """The stream's last events for a job that ended: open items closed, then the terminal event."""
        frames = self._begin() + self._close_message()
        answer = answer_text(job)
        if answer and not any(item["type"] == "message" for item in self.output):
            frames += self._text(answer) + self._close_message()  # an agent that answered without streaming
        self.status = STATUSES[JobStatus(job.status)]
        frames.append(self._event(TERMINAL_EVENTS[self.status], response=self.ended(job)))
        return frames

    def ended(self, job: Job) -> dict[str, Any]:
        error = None
        if job.status == JobStatus.FAILED:
            detail = (job.error or {}).get("detail") or "The agent's job failed."
            error = {"code": "server_error", "message": str(detail)}
        return self.snapshot(
            usage=usage_object(job),
            error=error,
            completed_at=int(job.finished_at.timestamp()) if job.finished_at else None,
        )

    def requires_action(self, job_id: str, tenant: str) -> dict[str, Any]:
        return self._event(
            "error",
            code="requires_action",
            param=None,
            message=f"The agent is waiting for an answer (job {job_id}); respond with POST /api/v1/{tenant}/jobs/"
            f"{job_id}/respond, then retrieve the response.",
        )


def stored_response(job: Job, base: dict[str, Any]) -> dict[str, Any]:
    """The response as its job's event log has it now."""
    translator = ResponseEvents(base)
    for event in event_list(thread=job.thread, job_id=job.pk):
        payload = event_payload(event)
        if payload["type"] in JOB_FINAL_EVENTS:
            break
        translator.feed(payload)
    if job.is_final:
        translator.finish(job)
        return translator.ended(job)
    translator.status = STATUSES[JobStatus(job.status)]
    return translator.snapshot()


def _ended(job_id: uuid.UUID) -> Job:
    return Job.objects.select_related("agent", "tenant", "thread").get(pk=job_id)


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


async def response_frames(
    job: Job,
    base: dict[str, Any],
    *,
    starting_after: int = -1,
    on_end: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[str]:
    """The job's life as Responses stream events after ``starting_after``, ending with the terminal event."""
    translator = ResponseEvents(base)
    async for event in job_events(job):
        if event is KEEP_ALIVE_EVENT:
            yield KEEP_ALIVE
            continue
        if event["type"] in JOB_FINAL_EVENTS:
            frames = translator.finish(await db_call(_ended, job.pk))
        elif event["type"] == "job.requires_action":
            # A person must answer, which no OpenAI client can: say so and stop (the job waits).
            waiting = await db_call(_ended, job.pk)  # for its tenant's slug, which the job may not have loaded
            frames = [*translator.feed(event), translator.requires_action(str(job.pk), waiting.tenant.slug)]
        else:
            frames = translator.feed(event)
        for frame in frames:
            if frame["sequence_number"] > starting_after:
                yield _sse(frame)
        if event["type"] == "job.requires_action":
            return
    if on_end is not None:
        await on_end()


def _streaming(frames: AsyncIterator[str], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in headers.items():
        response[name] = value
    return response


# --- OpenAPI ----------------------------------------------------------------------------------------------------


class OpenAIErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField(help_text="invalid_request_error, permission_error, server_error, ...")
    param = serializers.CharField(allow_null=True, help_text="The offending parameter, when there is one.")
    code = serializers.CharField(allow_null=True, help_text="model_not_found, invalid_type, not_found, ...")


class OpenAIErrorSerializer(serializers.Serializer):
    """An error as OpenAI words it (never problem details on /openai/)."""

    error = OpenAIErrorDetailSerializer()


class ResponseCreateSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="An agent: its slug in your default tenant, or `tenant/slug`.")
    input = serializers.JSONField(
        help_text="A string (the user's message) or an array of message items (`role` user, assistant, system or "
        "developer; `content` a string or `input_text` / `input_image` parts); the last must be the user's."
    )
    instructions = serializers.CharField(required=False, help_text="Become the job's additional instructions.")
    stream = serializers.BooleanField(required=False, default=False, help_text="Answer with Responses events (SSE).")
    background = serializers.BooleanField(
        required=False, default=False, help_text="Answer at once (`queued`); retrieve or stream it later."
    )
    store = serializers.BooleanField(
        required=False, default=True, help_text="false: the response is deleted once answered (404 afterwards)."
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=METADATA_VALUE_MAX), required=False, help_text="Up to 16 pairs."
    )
    previous_response_id = serializers.CharField(required=False, help_text="Continue that response's thread.")
    conversation = serializers.CharField(required=False, help_text="Continue this thread (its uuid).")


class ResponseObjectSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`resp_` and the job's uuid in hex.")
    object = serializers.ChoiceField(choices=["response"])
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(choices=sorted(set(STATUSES.values())))
    model = serializers.CharField()
    output = serializers.ListField(child=serializers.JSONField(), help_text="`message` and `function_call` items.")
    instructions = serializers.CharField(allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    previous_response_id = serializers.CharField(allow_null=True)
    conversation = serializers.JSONField(help_text='`{"id": "<thread uuid>"}`.')
    usage = serializers.JSONField(allow_null=True, help_text="Tokens, once the response ended.")
    error = serializers.JSONField(allow_null=True)
    completed_at = serializers.IntegerField(allow_null=True)


class InputItemListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = serializers.ListField(child=serializers.JSONField())  # type: ignore[assignment]
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


def _errors(**described: str) -> dict[int, OpenApiResponse]:
    """OpenAI-shaped errors for the given statuses, plus those of every route (401, 403, 429, 503)."""
    common = {
        "401": "Missing or invalid API key (`invalid_api_key`).",
        "403": "The token's scopes or roles do not allow this.",
        "429": "Rate limited (`rate_limit_exceeded`); see Retry-After.",
        "503": "A dependency is unavailable or the server overloaded (`service_unavailable`); see Retry-After.",
    }
    return {
        int(status): OpenApiResponse(OpenAIErrorSerializer, description=text)
        for status, text in {**common, **described}.items()
    }


EXAMPLE_ID = "resp_9b2f6c1e4d7a4f0e8c3b5a6d7e8f9a0b"
EXAMPLE_RESPONSE = {
    "id": EXAMPLE_ID,
    "object": "response",
    "created_at": 1765100000,
    "status": "completed",
    "model": "echo",
    "instructions": None,
    "metadata": {"ticket": "T-42"},
    "output": [
        {
            "id": "msg_9b2f6c1e4d7a4f0e8c3b5a6d7e8f9a0b_0",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello there", "annotations": []}],
        }
    ],
    "previous_response_id": None,
    "conversation": {"id": "0f8e2a34-7d6b-4c1e-9a5f-3b2c1d0e9f8a"},
    "usage": {
        "input_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 4,
    },
    "error": None,
    "completed_at": 1765100001,
}
STREAM_EXAMPLE = (
    'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{…}}\n\n'
    'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":1,"response":{…}}\n\n'
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":4,'
    '"item_id":"msg_…_0","output_index":0,"content_index":0,"delta":"Hello","logprobs":[]}\n\n'
    'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,"response":{…}}\n\n'
)
STREAM_RESPONSE = OpenApiResponse(
    {"type": "string", "format": "event-stream"},
    description="With `stream`: Responses events (`response.created`, `response.in_progress`, "
    "`response.output_item.added`, `response.content_part.added`, `response.output_text.delta`, "
    "`response.function_call_arguments.delta`, ..., `response.completed`), each with its `sequence_number`.",
    examples=[OpenApiExample("A stream", value=STREAM_EXAMPLE, status_codes=[200])],
)
ID_PARAMETER = OpenApiParameter("response_id", str, OpenApiParameter.PATH, description="`resp_<hex>`.")


@extend_schema(exclude=False, tags=["OpenAI Responses"])
class _ResponsesView(AsyncOpenAIView):
    """Documented in aihub's OpenAPI description, unlike the rest of /openai/ (which OpenAI describes)."""


# --- Views ------------------------------------------------------------------------------------------------------


async def _discard(job: Job) -> None:
    await db_call(job_results_delete, job=job)


class ResponsesView(_ResponsesView):
    @extend_schema(
        operation_id="openai_responses_create",
        summary="Create a response (OpenAI Responses API)",
        description="One turn with an agent, as `POST /api/v1/{tenant}/agents/{slug}/messages` takes it: a new "
        "thread, or the thread of `previous_response_id` / `conversation`. Waits for the job (at most 60 s), "
        "answers at once with `background`, or streams Responses events with `stream`.",
        request=ResponseCreateSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(ResponseObjectSerializer, description="The response."),
            (200, "text/event-stream"): STREAM_RESPONSE,
            **_errors(
                **{
                    "400": "Invalid parameter (the `param` names it).",
                    "404": "Unknown model (`model_not_found`), previous response or conversation.",
                    "409": "The thread has a job still running.",
                }
            ),
        },
        examples=[
            OpenApiExample("Hello", value={"model": "echo", "input": "Hello there"}, request_only=True),
            OpenApiExample(
                "A second turn",
                value={"model": "assistant", "input": "And then?", "previous_response_id": EXAMPLE_ID},
                request_only=True,
            ),
            OpenApiExample("The response", value=EXAMPLE_RESPONSE, response_only=True, status_codes=[200]),
        ],
    )
    async def post(self, request: Request) -> HttpResponseBase:
        parsed, job, base = await db_call(self._submit, request)
        headers = {THREAD_HEADER: str(job.thread_id), JOB_HEADER: str(job.pk)}
        if parsed.stream:
            on_end = None if parsed.store else (lambda: _discard(job))
            return _streaming(response_frames(job, base, on_end=on_end), headers)
        if not parsed.background:
            await job_wait(job=job, timeout=JOB_WAIT_MAX_SECONDS)
        return Response(await db_call(self._answer, job, base, store=parsed.store), headers=headers)

    def _submit(self, request: Request) -> tuple[ResponsesRequest, Job, dict[str, Any]]:
        parsed = parse_responses_request(request.data)
        usable = _model(request, parsed.model, param="model")
        thread = None
        if parsed.previous_response_id:
            param = "previous_response_id"
            previous = response_job(request, parsed.previous_response_id, param=param, what="Previous response")
            if previous.tenant_id != usable.agent.tenant_id:
                raise _invalid("The previous response belongs to another tenant than the model.", param)
            thread = previous.thread
        elif parsed.conversation is not None:
            thread = thread_of(usable, parsed.conversation, param="conversation")
        job = request_turn_submit(
            request,
            usable=usable,
            content=parsed.content,
            earlier=parsed.earlier,
            instructions=parsed.instructions,
            thread=thread,
            metadata=parsed.metadata,
        )
        base = response_base(job, default_tenant_id=_default_tenant_id(request), background=parsed.background)
        base["store"] = parsed.store
        return parsed, job, base

    def _answer(self, job: Job, base: dict[str, Any], *, store: bool) -> dict[str, Any]:
        job = _ended(job.pk)
        body = stored_response(job, base)
        if not store:
            job_results_delete(job=job)
        return body


def _stream_params(request: Request) -> tuple[bool, int]:
    stream = request.query_params.get("stream", "false").lower()
    if stream not in ("true", "false"):
        raise _invalid(f"Invalid value: '{stream}'. Expected a boolean.", "stream", "invalid_type")
    raw = request.query_params.get("starting_after")
    if raw is None:
        return stream == "true", -1
    if not raw.isdigit():
        raise _invalid(f"Invalid 'starting_after': '{raw}' is not a non-negative integer.", "starting_after")
    return stream == "true", int(raw)


class ResponseDetailView(_ResponsesView):
    def _find(self, request: Request, ref: str) -> tuple[Job, dict[str, Any]]:
        job = response_job(request, ref)
        return job, response_base(job, default_tenant_id=_default_tenant_id(request))

    @extend_schema(
        operation_id="openai_responses_retrieve",
        summary="Retrieve a response, or stream it",
        description="The response as its job's event log has it now. With `stream=true`, its Responses events "
        "from the first (or after `starting_after`), live until it ends; a replay numbers every event the same, "
        "so each is sent exactly once across reconnects.",
        parameters=[
            ID_PARAMETER,
            OpenApiParameter("stream", bool, description="Stream the response's events (SSE)."),
            OpenApiParameter("starting_after", int, description="With stream: the sequence number to resume after."),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(ResponseObjectSerializer, description="The response."),
            (200, "text/event-stream"): STREAM_RESPONSE,
            **_errors(**{"400": "Invalid `stream` or `starting_after`.", "404": "No such response (or deleted)."}),
        },
        examples=[OpenApiExample("A response", value=EXAMPLE_RESPONSE, response_only=True, status_codes=[200])],
    )
    async def get(self, request: Request, response_id: str) -> HttpResponseBase:
        stream, starting_after = _stream_params(request)
        job, base = await db_call(self._find, request, response_id)
        if stream:
            return _streaming(
                response_frames(job, base, starting_after=starting_after),
                {THREAD_HEADER: str(job.thread_id), JOB_HEADER: str(job.pk)},
            )
        return Response(await db_call(stored_response, job, base))

    @extend_schema(
        operation_id="openai_responses_delete",
        summary="Delete a response",
        description="Purges the job's results (cancelling it while active) so the response is 404 from now on. "
        "Its thread keeps the messages: they are the conversation (delete the thread to remove them); usage "
        "stays for accounting.",
        parameters=[ID_PARAMETER],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="Deleted."),
            **_errors(**{"404": "No such response (or already deleted)."}),
        },
        examples=[
            OpenApiExample(
                "Deleted", value={"id": EXAMPLE_ID, "object": "response", "deleted": True}, status_codes=[200]
            )
        ],
    )
    async def delete(self, request: Request, response_id: str) -> Response:
        await db_call(self._delete, request, response_id)
        return Response({"id": response_id, "object": "response", "deleted": True})

    def _delete(self, request: Request, ref: str) -> None:
        job_results_delete(job=response_job(request, ref))


class ResponseCancelView(_ResponsesView):
    @extend_schema(
        operation_id="openai_responses_cancel",
        summary="Cancel a response",
        description="Cancels its job (`immediate`: at once when queued, at the runner's next check when running) "
        "and answers the response, `cancelled` once the job stopped (waiting a few seconds for it). Cancelling a "
        "cancelled response answers it again; one that ended otherwise is a 409.",
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            200: OpenApiResponse(ResponseObjectSerializer, description="The response."),
            **_errors(**{"404": "No such response.", "409": "The response has already ended."}),
        },
        examples=[
            OpenApiExample(
                "Cancelled",
                value={**EXAMPLE_RESPONSE, "status": "cancelled", "output": []},
                response_only=True,
                status_codes=[200],
            )
        ],
    )
    async def post(self, request: Request, response_id: str) -> Response:
        job = await db_call(self._cancel, request, response_id)
        await job_wait(job=job, timeout=CANCEL_WAIT_SECONDS)
        return Response(await db_call(self._answer, request, job))

    def _cancel(self, request: Request, ref: str) -> Job:
        job = response_job(request, ref)
        if job.status == JobStatus.CANCELLED:
            return job
        if job.is_final:
            raise OpenAIError(
                f"Cannot cancel a response that has already ended ({STATUSES[JobStatus(job.status)]}).",
                status=409,
                code="response_already_ended",
            )
        return job_cancel(job=job)

    def _answer(self, request: Request, job: Job) -> dict[str, Any]:
        job = _ended(job.pk)
        return stored_response(job, response_base(job, default_tenant_id=_default_tenant_id(request)))


# --- Input items -----------------------------------------------------------------------------------------------


def input_item(message: Message) -> dict[str, Any]:
    """A stored message as a Responses input item."""
    item: dict[str, Any] = {
        "id": f"msg_{message.pk.hex}",
        "type": "message",
        "role": message.role,
        "status": "completed",
    }
    if message.role == MessageRole.ASSISTANT:
        item["content"] = [{"type": "output_text", "text": text_of(message.content), "annotations": []}]
        return item
    parts: list[dict[str, Any]] = []
    for block in message.content:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "input_text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(
                {
                    "type": "input_image",
                    "detail": block.get("detail") or "auto",
                    "file_id": block.get("file_id"),
                    "image_url": block.get("url"),
                }
            )
        elif kind == "file":
            parts.append({"type": "input_file", "file_id": block.get("file_id"), "filename": block.get("name")})
    item["content"] = parts
    return item


def input_messages(job: Job) -> list[Message]:
    """What the response took as input, oldest first: the message it answers and, when it began its thread, the
    history stored before it (as OpenAI lists a response's own input, not its predecessors')."""
    answered = Message.objects.filter(pk=job.input.get("message"))
    if Job.objects.filter(thread_id=job.thread_id, created_at__lt=job.created_at).exists():
        return list(answered)
    before = Message.objects.filter(
        thread_id=job.thread_id, created_at__lte=Subquery(answered.values("created_at")[:1])
    )
    return list(before.exclude(role=MessageRole.TOOL).order_by("created_at", "id"))


@extend_schema(exclude=False, tags=["OpenAI Responses"])
class ResponseInputItemsView(OpenAIView):
    @extend_schema(
        operation_id="openai_responses_input_items",
        summary="List a response's input items",
        parameters=[
            ID_PARAMETER,
            OpenApiParameter("after", str, description="An item id: list the items after it."),
            OpenApiParameter("limit", int, description="1 to 100 (20)."),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="desc (default) or asc."),
        ],
        responses={
            200: OpenApiResponse(InputItemListSerializer, description="The items."),
            **_errors(**{"400": "Invalid `limit`, `order` or `after`.", "404": "No such response."}),
        },
        examples=[
            OpenApiExample(
                "One message",
                value={
                    "object": "list",
                    "data": [
                        {
                            "id": "msg_4c1e9a5f3b2c1d0e9f8a0f8e2a347d6b",
                            "type": "message",
                            "role": "user",
                            "status": "completed",
                            "content": [{"type": "input_text", "text": "Hello there"}],
                        }
                    ],
                    "first_id": "msg_4c1e9a5f3b2c1d0e9f8a0f8e2a347d6b",
                    "last_id": "msg_4c1e9a5f3b2c1d0e9f8a0f8e2a347d6b",
                    "has_more": False,
                },
                status_codes=[200],
            )
        ],
    )
    def get(self, request: Request, response_id: str) -> Response:
        params = request.query_params
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _invalid(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", "order")
        raw_limit = params.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= INPUT_ITEMS_MAX_LIMIT:
            raise _invalid(f"Invalid 'limit': an integer from 1 to {INPUT_ITEMS_MAX_LIMIT}.", "limit")
        items = [input_item(message) for message in input_messages(response_job(request, response_id))]
        if order == "desc":
            items.reverse()
        after = params.get("after")
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise _invalid(f"No input item '{after}' in this response.", "after")
            items = items[ids.index(after) + 1 :]
        page = items[: int(raw_limit)]
        return Response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > len(page),
            }
        )


# Included before aihub.interop.openai_api's patterns, whose last one answers every other path with a 404.
urlpatterns = [
    path("responses", ResponsesView.as_view(), name="openai-responses"),
    path("responses/<str:response_id>", ResponseDetailView.as_view(), name="openai-response"),
    path("responses/<str:response_id>/cancel", ResponseCancelView.as_view(), name="openai-response-cancel"),
    path(
        "responses/<str:response_id>/input_items", ResponseInputItemsView.as_view(), name="openai-response-input-items"
    ),
]
