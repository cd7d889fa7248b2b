"""The OpenAI-compatible front door under ``/openai/v1/``: any OpenAI client talks to aihub's agents.

- ``GET models``, ``GET models/{id}``: the enabled agents the caller may use. A model id is an agent's slug in
  the caller's default tenant (``assistant``) or ``tenant/slug`` for any tenant the caller belongs to
  (``acme/assistant``); see :mod:`aihub.interop.agents`.
- ``POST chat/completions``: the last message (from the user) becomes a message on a thread and starts the
  agent's job, exactly as ``POST /api/v1/{tenant}/agents/{slug}/messages`` does; ``system`` and ``developer``
  messages become the job's ``additional_instructions``. Without a thread, a new one is made and the earlier
  user and assistant messages of the request are stored on it first, as its history. With a thread
  (``metadata: {"thread": "<uuid>"}`` or the ``X-Aihub-Thread`` header) the turn continues that thread and the
  earlier messages of the request are ignored: the stored thread is the truth. Every answer names its thread
  (``thread`` in the body and the ``X-Aihub-Thread`` header) and job (``job``, ``X-Aihub-Job``).
  Non-streaming answers a ``chat.completion`` once the job ended (at most ``JOB_WAIT_MAX_SECONDS``); with
  ``stream: true``, ``chat.completion.chunk`` server-sent events made from the job's ``llm.chunk`` events,
  a usage chunk with ``stream_options.include_usage``, then ``data: [DONE]``.
- ``POST embeddings``: vectors from the bundled local model (``local/all-MiniLM-L6-v2``) or from the embedder
  of a knowledge collection the caller may read (``collection:<slug>``, ``collection:<tenant>/<slug>``), so
  they compare with that collection's chunks; ``float`` or ``base64`` encoding, with usage.
- ``POST images/generations``, ``audio/transcriptions``, ``audio/speech``: passed through to a provider model
  that offers them, and accounted; see :mod:`aihub.interop.passthrough`.

Authentication is the API's (bearer API tokens, OAuth2 and SSO tokens); errors are OpenAI's
``{"error": {"message", "type", "param", "code"}}``, never problem details, on these routes only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from channels.db import database_sync_to_async
from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from aihub import extraction
from aihub.access.principal import principal_for
from aihub.api.base import ApiView, AsyncApiView, caller
from aihub.api.problems import PayloadTooLarge, set_rollback
from aihub.db import db_call
from aihub.interop.agents import UsableAgent, default_principal, usable_agent, usable_agents
from aihub.interop.conversation import (
    KEEP_ALIVE_EVENT,
    EarlierMessage,
    answer_text,
    job_events,
    turn_submit,
    usage_counts,
)
from aihub.unavailable import log_unavailable, retry_after_seconds, unavailable_dependency, unavailable_detail
from jobs.attachments import attachment_block
from jobs.models import Job, JobStatus
from jobs.selectors import JOB_WAIT_MAX_SECONDS, job_wait
from threads import services as thread_services
from threads.content import text_of
from threads.models import File, MessageRole, Thread
from threads.selectors import thread_get
from threads.sse import JsonWhateverAccepted

logger = logging.getLogger(__name__)

THREAD_HEADER = "X-Aihub-Thread"
JOB_HEADER = "X-Aihub-Job"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


# --- Errors in OpenAI's shape -----------------------------------------------------------------------------------


class OpenAIError(exceptions.APIException):
    """An error as OpenAI words it: status, message, type, param and code."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status
        self.body = {"message": message, "type": type, "param": param, "code": code}
        self.headers = headers or {}


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _as_openai_error(exc: Exception) -> OpenAIError | None:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        message = (
            "You didn't provide an API key: send it as 'Authorization: Bearer <token>'."
            if isinstance(exc, exceptions.NotAuthenticated)
            else f"Incorrect API key provided. {exc.detail}"
        )
        return OpenAIError(message, status=401, code="invalid_api_key")
    if isinstance(exc, exceptions.Throttled):
        return OpenAIError(str(exc.detail), status=429, type="requests", code="rate_limit_exceeded")
    if isinstance(exc, exceptions.PermissionDenied | PermissionDenied):
        denied = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        return OpenAIError(str(denied), status=403, type="permission_error", code="permission_denied")
    if isinstance(exc, exceptions.NotFound | Http404):
        return OpenAIError(str(exc) or "Not found.", status=404, code="not_found")
    if isinstance(exc, exceptions.ValidationError | DjangoValidationError):
        invalid: Any
        if isinstance(exc, DjangoValidationError):
            invalid = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        else:
            invalid = exc.detail
        if isinstance(invalid, dict) and invalid:
            param, errors = next(iter(invalid.items()))
            first: Any = errors[0] if isinstance(errors, list) and errors else errors
            return OpenAIError(str(first), param=str(param), code="invalid_value")
        first = invalid[0] if isinstance(invalid, list) and invalid else invalid
        return OpenAIError(str(first) or "Invalid request.", code="invalid_value")
    if isinstance(exc, exceptions.ParseError):
        return OpenAIError(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.", status=400
        )
    if isinstance(exc, exceptions.APIException):
        code = "conflict" if exc.status_code == 409 else exc.default_code
        return OpenAIError(str(exc.detail), status=exc.status_code, code=str(code))
    dependency = unavailable_dependency(exc)
    if dependency is not None:
        log_unavailable(dependency, exc, "the OpenAI-compatible API")
        # OpenAI's own answer when it is overloaded: 503, type "server_error", and a hint when to retry.
        return OpenAIError(
            unavailable_detail(dependency),
            status=503,
            type="server_error",
            code="service_unavailable",
            headers={"Retry-After": str(retry_after_seconds())},
        )
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    request = context.get("request")
    set_rollback(request)
    error = _as_openai_error(exc)
    if error is None:
        logger.exception("unhandled error in the OpenAI-compatible API", exc_info=exc)
        error = OpenAIError("The server had an error while processing your request.", status=500, type="server_error")
    headers = dict(error.headers)
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return Response({"error": error.body}, status=error.status_code, headers=headers)


def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown routes under /openai/v1/, as OpenAI answers them."""
    body = error_body(f"Invalid URL ({request.method} {request.path})", type="invalid_request_error")
    return JsonResponse(body, status=404)


@extend_schema(exclude=True)  # OpenAI's API is described by OpenAI; aihub's OpenAPI document is /api/v1/
class OpenAIView(ApiView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonWhateverAccepted

    def get_exception_handler(self) -> Any:
        return exception_handler


@extend_schema(exclude=True)
class AsyncOpenAIView(AsyncApiView):
    renderer_classes = OpenAIView.renderer_classes
    content_negotiation_class = OpenAIView.content_negotiation_class
    get_exception_handler = OpenAIView.get_exception_handler


# --- Models -----------------------------------------------------------------------------------------------------


def model_object(usable: UsableAgent) -> dict[str, Any]:
    agent = usable.agent
    return {
        "id": usable.id,
        "object": "model",
        "created": int(agent.created_at.timestamp()),
        "owned_by": agent.tenant.slug,
        "name": agent.name,
        "description": agent.description,
    }


def _model(request: Request, model: str, *, param: str | None = None) -> UsableAgent:
    try:
        return usable_agent(user=caller(request), auth=request.auth, name=model)
    except Http404 as exc:
        raise OpenAIError(
            f"The model `{model}` does not exist or you do not have access to it.",
            status=404,
            param=param,
            code="model_not_found",
        ) from exc


class ModelListView(OpenAIView):
    def get(self, request: Request) -> Response:
        models = [model_object(usable) for usable in usable_agents(user=caller(request), auth=request.auth)]
        return Response({"object": "list", "data": models})


class ModelDetailView(OpenAIView):
    def get(self, request: Request, model: str) -> Response:
        return Response(model_object(_model(request, model)))


# --- Chat completions: the request --------------------------------------------------------------------------------


@dataclass
class ChatRequest:
    model: str
    content: list[dict[str, Any]]
    earlier: list[EarlierMessage] = field(default_factory=list)
    instructions: str = ""
    stream: bool = False
    include_usage: bool = False
    thread: uuid.UUID | None = None


@dataclass(frozen=True)
class InlineImage:
    """An image sent inline as a base64 ``data:`` URL (what the SDKs' examples do with local images). It is stored
    as one of the caller's files, like an upload, before the turn is submitted; blocks then refer to it by id."""

    data: bytes
    declared_type: str
    param: str


_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[^;,]*)*?;base64,(?P<data>.*)", re.DOTALL)


def _inline_image(url: str, param: str) -> InlineImage:
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise _invalid("An image data URL must be base64: 'data:image/png;base64,<data>'.", param)
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("The image data URL's base64 data is not valid.", param) from None
    if not data:
        raise _invalid("The image data URL holds no data.", param)
    return InlineImage(data=data, declared_type=match["type"] or "", param=param)


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(message, param=param, code=code)


def _type_error(param: str, expected: str, value: Any) -> OpenAIError:
    return _invalid(
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__}.", param, "invalid_type"
    )


def _content_blocks(content: Any, param: str, *, required: bool) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) as aihub content blocks."""
    if content is None:
        if required:
            raise _invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _type_error(param, "one of a string or an array of content parts", content)
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _type_error(where, "an object", part)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _invalid(
                    f"Missing required parameter: '{where}.text'.", f"{where}.text", "missing_required_parameter"
                )
            blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url:
                raise _invalid(
                    f"Missing required parameter: '{where}.image_url.url'.",
                    f"{where}.image_url.url",
                    "missing_required_parameter",
                )
            detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
            if detail not in ("auto", "low", "high"):
                raise _invalid(
                    f"Invalid value: '{detail}'. Supported values are: 'auto', 'low' and 'high'.",
                    f"{where}.image_url.detail",
                )
            if url.startswith("data:"):
                inline = _inline_image(url, f"{where}.image_url.url")
                blocks.append({"type": "image", "inline": inline, "detail": detail})
                continue
            if len(url) > 2000:
                raise _invalid(
                    "Image URLs may be at most 2000 characters; send the image as a base64 data: URL instead.",
                    f"{where}.image_url.url",
                )
            blocks.append({"type": "image", "url": url, "detail": detail})
        else:
            raise _invalid(f"Invalid value: '{kind}'. Supported values are: 'text' and 'image_url'.", f"{where}.type")
    return blocks


def _requested_model(data: Any) -> str:
    """The ``model`` of a request body, checked as OpenAI checks it (every route's first check)."""
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object.", None)
    model = data.get("model")
    if not model:
        raise _invalid("you must provide a model parameter", None, "missing_required_parameter")
    if not isinstance(model, str):
        raise _type_error("model", "a string", model)
    return model


def parse_chat_request(data: Any, *, thread_header: str | None) -> ChatRequest:
    """The request as OpenAI validates it (same messages, params and codes), then what aihub needs of it."""
    model = _requested_model(data)
    messages = data.get("messages")
    if messages is None:
        raise _invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _type_error("messages", "an array", messages)
    if not messages:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages", "empty_array"
        )

    parsed: list[tuple[str, list[dict[str, Any]]]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _type_error(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise _invalid(
                f"Missing required parameter: '{where}.role'.", f"{where}.role", "missing_required_parameter"
            )
        if role not in ROLES:
            supported = ", ".join(f"'{r}'" for r in ROLES)
            raise _invalid(f"Invalid value: '{role}'. Supported values are: {supported}.", f"{where}.role")
        required = role in ("system", "developer", "user", "tool")
        parsed.append((role, _content_blocks(message.get("content"), f"{where}.content", required=required)))

    last_role, content = parsed[-1]
    if last_role != "user":
        raise _invalid(
            f"The last message must be from the user, not '{last_role}': an agent answers a user's message.",
            f"messages[{len(parsed) - 1}].role",
        )
    if not content:
        raise _invalid("The user's message is empty.", f"messages[{len(parsed) - 1}].content")

    stream = data.get("stream") or False
    if not isinstance(stream, bool):
        raise _type_error("stream", "a boolean", stream)
    options = data.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
        if not isinstance(options, dict):
            raise _type_error("stream_options", "an object", options)
        include_usage = bool(options.get("include_usage"))
    n = data.get("n")
    if n is not None and n != 1:
        raise _invalid("Only n=1 is supported: an agent gives one answer per message.", "n", "unsupported_value")

    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _type_error("metadata", "an object", metadata)
    thread_ref = (metadata or {}).get("thread") or thread_header
    thread: uuid.UUID | None = None
    if thread_ref:
        try:
            thread = uuid.UUID(str(thread_ref))
        except ValueError as exc:
            raise _invalid(f"Invalid thread id: '{thread_ref}'.", "metadata.thread") from exc

    instructions = [text_of(blocks) for role, blocks in parsed[:-1] if role in ("system", "developer")]
    earlier = [
        EarlierMessage(role=MessageRole(role), content=blocks)
        for role, blocks in parsed[:-1]
        if role in ("user", "assistant") and blocks
    ]
    return ChatRequest(
        model=model,
        content=content,
        earlier=earlier,
        instructions="\n\n".join(text for text in instructions if text),
        stream=stream,
        include_usage=include_usage,
        thread=thread,
    )


# --- Chat completions: the answer ---------------------------------------------------------------------------------


def completion_id(job: Job) -> str:
    return f"chatcmpl-{job.pk.hex}"


def usage_object(job: Job) -> dict[str, int]:
    prompt, completion, total = usage_counts(job)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _job_error(job: Job) -> OpenAIError:
    if job.status == JobStatus.REQUIRES_ACTION:
        return OpenAIError(
            f"The agent is waiting for an answer (job {job.pk}); respond with POST /api/v1/{job.tenant.slug}/jobs/"
            f"{job.pk}/respond.",
            status=409,
            code="requires_action",
        )
    if not job.is_final:
        return OpenAIError(
            f"The agent did not answer within {JOB_WAIT_MAX_SECONDS:g} seconds; the job {job.pk} goes on. Stream "
            "(stream: true) for long answers.",
            status=504,
            type="timeout",
            code="job_still_running",
        )
    detail = (job.error or {}).get("detail") or f"The job ended {job.status}."
    return OpenAIError(
        f"The agent's job {job.pk} {job.status}: {detail}", status=500, type="server_error", code=f"job_{job.status}"
    )


def completion_body(job: Job, model: str) -> dict[str, Any]:
    return {
        "id": completion_id(job),
        "object": "chat.completion",
        "created": int(job.created_at.timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer_text(job), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_object(job),
        "system_fingerprint": None,
        "thread": str(job.thread_id),
        "job": str(job.pk),
    }


def _sse(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n"


@database_sync_to_async
def _reload(job_id: uuid.UUID) -> Job:
    return Job.objects.select_related("tenant").get(pk=job_id)


async def completion_chunks(job: Job, model: str, *, include_usage: bool) -> AsyncIterator[str]:
    """The job's life as ``chat.completion.chunk`` frames, ``data: [DONE]`` last."""
    base = {
        "id": completion_id(job),
        "object": "chat.completion.chunk",
        "created": int(job.created_at.timestamp()),
        "model": model,
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        body = {**base, "choices": [choice], **extra}
        if include_usage:
            body["usage"] = None
        return _sse(body)

    yield chunk({"role": "assistant", "content": ""}, thread=str(job.thread_id), job=str(job.pk))
    streamed = False
    async for event in job_events(job):
        kind = event["type"]
        if event is KEEP_ALIVE_EVENT:
            yield ": keep-alive\n\n"
        elif kind == "llm.chunk" and event["data"].get("delta"):
            streamed = True
            yield chunk({"content": event["data"]["delta"]})
        elif kind == "job.requires_action":
            break  # the job waits for a person's answer, which no OpenAI client can give: say so and stop
    ended = await _reload(job.pk)
    if ended.status != JobStatus.SUCCEEDED:
        # OpenAI's SDKs raise an APIError for a frame that carries an error.
        yield _sse({"error": _job_error(ended).body})
        yield _sse("[DONE]")
        return
    if not streamed and answer_text(ended):
        # An agent that answered without streaming tokens still answers.
        yield chunk({"content": answer_text(ended)})
    yield chunk({}, "stop")
    if include_usage:
        yield _sse({**base, "choices": [], "usage": usage_object(ended)})
    yield _sse("[DONE]")


def _store_inline_images(
    blocks: list[dict[str, Any]], *, tenant: Any, user: Any, stored: list[File]
) -> list[dict[str, Any]]:
    """The blocks with each inline image stored as one of ``user``'s files (appended to ``stored``, whose bytes
    the caller discards if the turn is not committed) and referred to by id, as an attached image is."""
    result = []
    for block in blocks:
        inline = block.get("inline")
        if not isinstance(inline, InlineImage):
            result.append(block)
            continue
        media_type = thread_services.file_media_type(data=inline.data, name="", declared=inline.declared_type)
        if not extraction.is_image(media_type):
            raise _invalid(f"The image data URL holds {media_type}, not an image.", inline.param)
        name = "image" + (mimetypes.guess_extension(media_type) or "")
        try:
            file = thread_services.file_create(
                tenant=tenant, uploaded_by=user, name=name, data=inline.data, declared_type=media_type
            )
        except PayloadTooLarge as exc:
            raise OpenAIError(str(exc.detail), status=413, param=inline.param, code="file_too_large") from None
        except DjangoValidationError as exc:
            raise _invalid(" ".join(exc.messages), inline.param) from None
        stored.append(file)
        result.append({**attachment_block(file), "detail": block["detail"]})
    return result


def thread_of(usable: UsableAgent, thread_id: uuid.UUID, *, param: str) -> Thread:
    """The thread a request continues, seen as the caller in the model's tenant; 404 ``thread_not_found``."""
    try:
        return thread_get(principal=usable.principal, thread_id=thread_id)
    except Http404 as exc:
        raise OpenAIError(
            f"No thread '{thread_id}' in the model's tenant.", status=404, param=param, code="thread_not_found"
        ) from exc


def request_turn_submit(
    request: Request,
    *,
    usable: UsableAgent,
    content: list[dict[str, Any]],
    earlier: list[EarlierMessage],
    instructions: str,
    thread: Thread | None,
    metadata: dict[str, str] | None = None,
) -> Job:
    """:func:`turn_submit` for an OpenAI request: its inline images are stored as the caller's files first, in the
    same transaction, and their bytes discarded if the turn is refused."""
    user, tenant = caller(request), usable.agent.tenant
    stored: list[File] = []
    try:
        with transaction.atomic():
            content = _store_inline_images(content, tenant=tenant, user=user, stored=stored)
            earlier = [
                replace(m, content=_store_inline_images(m.content, tenant=tenant, user=user, stored=stored))
                for m in earlier
            ]
            return turn_submit(
                agent=usable.agent,
                user=user,
                content=content,
                thread=thread,
                earlier=earlier,
                additional_instructions=instructions,
                metadata=metadata,
            )
    except BaseException:
        # Storage is not transactional: the bytes of images whose rows were rolled back go too.
        thread_services.files_discard_stored(files=stored)
        raise


class ChatCompletionsView(AsyncOpenAIView):
    # Async: a non-streamed completion waits on the channel layer for its job, holding no thread or connection.
    async def post(self, request: Request) -> HttpResponseBase:
        chat, job = await db_call(self._submit, request)
        headers = {THREAD_HEADER: str(job.thread_id), JOB_HEADER: str(job.pk)}
        if chat.stream:
            frames = completion_chunks(job, chat.model, include_usage=chat.include_usage)
            response = StreamingHttpResponse(frames, content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
            for name, value in headers.items():
                response[name] = value
            return response
        await job_wait(job=job, timeout=JOB_WAIT_MAX_SECONDS)
        return await db_call(self._answer, job, chat.model, headers)

    def _submit(self, request: Request) -> tuple[ChatRequest, Job]:
        chat = parse_chat_request(request.data, thread_header=request.headers.get(THREAD_HEADER))
        usable = _model(request, chat.model, param="model")
        thread = None if chat.thread is None else thread_of(usable, chat.thread, param="metadata.thread")
        job = request_turn_submit(
            request,
            usable=usable,
            content=chat.content,
            earlier=chat.earlier,
            instructions=chat.instructions,
            thread=thread,
        )
        return chat, job

    def _answer(self, job: Job, model: str, headers: dict[str, str]) -> Response:
        job = Job.objects.select_related("agent", "tenant", "thread").get(pk=job.pk)
        if job.status != JobStatus.SUCCEEDED:
            error = _job_error(job)
            error.headers.update(headers)  # the job and thread exist: say which, so the client can follow up
            raise error
        return Response(completion_body(job, model), headers=headers)


# --- Embeddings -------------------------------------------------------------------------------------------------

EMBEDDINGS_MAX_INPUTS = 2048
COLLECTION_PREFIX = "collection:"


def _embedder_for(request: Request, model: str) -> Any:
    """The embedder a model id names: the bundled local model by name, or the embedder of a collection the
    caller may read (``collection:<slug>`` in the default tenant, ``collection:<tenant>/<slug>``).

    Remote embedders (``openai/<model>``) are reachable only through a collection that uses them: they spend
    the operator's provider account, which a collection's readers were given and others were not.
    """
    from knowledge.embedders import LOCAL_MINILM, get_embedder
    from knowledge.selectors import collection_get

    not_found = OpenAIError(
        f"The model `{model}` does not exist or you do not have access to it.",
        status=404,
        param="model",
        code="model_not_found",
    )
    if model == LOCAL_MINILM:
        return get_embedder(model)
    if not model.startswith(COLLECTION_PREFIX):
        raise not_found
    tenant_ref, separator, slug = model.removeprefix(COLLECTION_PREFIX).rpartition("/")
    try:
        principal = (
            principal_for(user=caller(request), tenant_ref=tenant_ref, auth=request.auth)
            if separator
            else default_principal(user=caller(request), auth=request.auth)
        )
        collection = collection_get(principal=principal, slug=slug)
    except (Http404, PermissionDenied) as exc:
        raise not_found from exc
    return get_embedder(collection.embedder)


def _embedding_inputs(data: Any) -> tuple[str, list[str], str]:
    model = _requested_model(data)
    raw = data.get("input")
    if raw is None:
        raise _invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise _invalid("'input' must be a non-empty string or a non-empty array of strings.", "input")
    if len(texts) > EMBEDDINGS_MAX_INPUTS:
        raise _invalid(f"'input' may hold at most {EMBEDDINGS_MAX_INPUTS} strings.", "input")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            # OpenAI also takes token arrays; tokens are the provider's, so aihub takes text only.
            raise _invalid("'input' must be strings (token arrays are not supported).", f"input[{index}]")
        if not text:
            raise _invalid("'input' cannot contain an empty string.", f"input[{index}]")
    encoding = data.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _invalid(f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.", "encoding_format")
    return model, texts, encoding


class EmbeddingsView(OpenAIView):
    def post(self, request: Request) -> Response:
        if not apps.is_installed("knowledge"):
            raise OpenAIError("Embeddings need the knowledge app.", status=404, code="not_found")
        from knowledge.embedders import EmbeddingError

        model, texts, encoding = _embedding_inputs(request.data)
        dimensions = request.data.get("dimensions")
        embedder = _embedder_for(request, model)
        tokens = [embedder.count_tokens(text) for text in texts]
        for index, count in enumerate(tokens):
            if count > embedder.max_tokens:
                raise _invalid(
                    f"This model's maximum context length is {embedder.max_tokens} tokens, however you requested "
                    f"{count} tokens in input[{index}].",
                    f"input[{index}]",
                    "context_length_exceeded",
                )
        try:
            vectors = embedder.embed(texts)
        except EmbeddingError as exc:
            raise OpenAIError(str(exc), status=502, type="server_error", code="upstream_error") from exc
        if dimensions is not None and dimensions != vectors.shape[1]:
            raise _invalid(
                f"This model's embeddings have {vectors.shape[1]} dimensions; it cannot give {dimensions}.",
                "dimensions",
                "unsupported_value",
            )
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": (
                    base64.b64encode(vector.astype("<f4").tobytes()).decode()
                    if encoding == "base64"
                    else [float(value) for value in vector]
                ),
            }
            for index, vector in enumerate(vectors)
        ]
        total = sum(tokens)
        usage = {"prompt_tokens": total, "total_tokens": total}
        return Response({"object": "list", "data": data, "model": model, "usage": usage})


def _passthrough(name: str) -> Any:
    """A view of :mod:`aihub.interop.passthrough`, imported on first use (it builds on this module)."""

    @csrf_exempt  # as DRF's own views: bearer tokens, not cookies
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        from aihub.interop import passthrough

        return getattr(passthrough, name)(request, *args, **kwargs)

    return view


urlpatterns = [
    path("models", ModelListView.as_view(), name="openai-models"),
    re_path(r"^models/(?P<model>[^?#]+)$", ModelDetailView.as_view(), name="openai-model"),
    path("chat/completions", ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("embeddings", EmbeddingsView.as_view(), name="openai-embeddings"),
    path("images/generations", _passthrough("images_view"), name="openai-images"),
    path("audio/transcriptions", _passthrough("transcriptions_view"), name="openai-transcriptions"),
    path("audio/speech", _passthrough("speech_view"), name="openai-speech"),
    re_path(r"^.*$", not_found_view),
]
