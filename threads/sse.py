"""Server-sent events: one thread's events, or one job's, replayed from the database then live.

``GET /api/v1/{tenant}/threads/{id}/stream`` and ``GET /api/v1/{tenant}/jobs/{id}/stream`` (the latter ends
after the job's final event). The views are DRF views, so authentication (bearer API token, OAuth2 or OIDC
token, or the session), scopes, throttling and problem details are the API's own and happen before the first
byte is streamed; what they return is a ``StreamingHttpResponse`` over an async iterator, which Django's ASGI
handler streams on the server's event loop.

Every event is one frame::

    id: <sequence>
    event: <type>
    data: <the event as JSON (threads.events.event_payload)>

``stream.mode`` comes without an ``id:`` (it is no position in the log), ``: keep-alive`` comments every
``AIHUB["SSE_KEEPALIVE_SECONDS"]`` keep proxies from timing out a quiet stream. ``Last-Event-ID`` (what
``EventSource`` sends when it reconnects) or ``?last_event_id=`` resumes after that id; an id ahead of the
thread's log is a 400. A job stream asked to resume after the finished job's last event answers 204, which
tells ``EventSource`` to stop reconnecting. Closing a stream never stops the job it watches, unless the request
asked for it with ``?cancel_on_disconnect=true`` (job streams only): then a client that leaves before the job's
final event cancels the job (``immediate``).

The message-posting routes answer ``?stream=true`` with :func:`job_stream_response`, the same stream as
``GET jobs/{id}/stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import TenantApiView
from aihub.api.problems import Conflict
from aihub.api.schema import ProblemSerializer
from aihub.conf import aihub_settings
from aihub.db import release_connection
from jobs.models import CancelMode, Job
from jobs.selectors import job_get
from jobs.services import job_cancel
from threads import selectors
from threads.events import event_payload, thread_group
from threads.fanout import event_hub
from threads.streams import ThreadEventStream

LAST_EVENT_ID_HEADER = "Last-Event-ID"
KEEP_ALIVE = ": keep-alive\n\n"


CANCEL_ON_DISCONNECT_HELP = (
    "Cancel the job (`immediate`) when the client disconnects before the job's final event. Without it, "
    "closing the stream never stops the job."
)


class JsonWhateverAccepted(DefaultContentNegotiation):
    """``Accept: text/event-stream`` must not be a 406: the stream bypasses renderers, and the errors before it
    are problem details in JSON, whatever the client accepts."""

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class EventStreamAccepted(DefaultContentNegotiation):
    """For routes that stream only on request (``?stream=true``): a client accepting ``text/event-stream`` gets
    JSON (the non-streamed answer, or the problem before the stream) instead of a 406; others as usual."""

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        if "text/event-stream" in request.META.get("HTTP_ACCEPT", ""):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


def sse_frame(event: dict[str, Any]) -> str:
    lines = [] if event["type"] == "stream.mode" else [f"id: {event['id']}"]
    # json.dumps escapes newlines inside strings, so the data is always a single line.
    lines += [f"event: {event['type']}", f"data: {json.dumps(event, separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"


async def _next(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


@database_sync_to_async
def _cancel_unless_ended(job_id: uuid.UUID) -> None:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.is_final:
        return
    # It may end between the check and the lock (a 409 Conflict): then there is nothing left to stop.
    with contextlib.suppress(Conflict):
        job_cancel(job=job, mode=CancelMode.IMMEDIATE)


async def event_frames(
    *,
    thread_id: uuid.UUID,
    after: int,
    job_id: uuid.UUID | None = None,
    cancel_on_disconnect: bool = False,
    prelude: Sequence[dict[str, Any]] = (),
) -> AsyncGenerator[str]:
    """The SSE body: ``prelude`` (events up to ``after`` sent first), replay, ``stream.mode``, live events (and
    keep-alive comments while quiet).

    With ``cancel_on_disconnect`` (and a ``job_id``), leaving before the job's final event cancels the job.
    """
    # The view that made this response ran on the request's own thread and took a database connection there,
    # which Django gives back only when the response closes: at the end of the stream, minutes or hours later.
    # Given back now (same thread: the body is iterated in the request's thread-sensitive context), or every open
    # stream would hold a connection of the pool and the next requests would find it empty (503).
    await sync_to_async(release_connection)()
    hub = event_hub()
    group = thread_group(thread_id)
    stream = ThreadEventStream(
        thread_id=thread_id, after=after, job_id=job_id, poll_seconds=float(aihub_settings.STREAM_POLL_SECONDS)
    )
    # Listening before the replay reads the log, so nothing committed meanwhile is missed.
    await hub.listen(group, stream.offer)
    events = stream.events()
    pending: asyncio.Task[dict[str, Any] | None] | None = None
    keepalive = float(aihub_settings.SSE_KEEPALIVE_SECONDS)
    ended = False
    try:
        for earlier in prelude:
            yield sse_frame(earlier)
        while True:
            if pending is None:
                pending = asyncio.create_task(_next(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield KEEP_ALIVE
                continue
            event, pending = pending.result(), None
            if event is None:
                ended = True
                return  # the job's final event was sent
            yield sse_frame(event)
    finally:
        # The client left (or the job ended): stop watching. The job itself is left alone unless the client
        # asked for it to be cancelled with the stream.
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await hub.unlisten(group, stream.offer)
        if cancel_on_disconnect and job_id is not None and not ended:
            await _cancel_unless_ended(job_id)


def event_stream_response(
    *,
    thread_id: uuid.UUID,
    after: int,
    job_id: uuid.UUID | None = None,
    cancel_on_disconnect: bool = False,
    prelude: Sequence[dict[str, Any]] = (),
) -> StreamingHttpResponse:
    frames = event_frames(
        thread_id=thread_id, after=after, job_id=job_id, cancel_on_disconnect=cancel_on_disconnect, prelude=prelude
    )
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold events back to fill its buffer
    return response


def _input_message_event(job: Job, *, before: int) -> dict[str, Any] | None:
    """The ``message.created`` of the message the job answers: the event just before the job's first one.

    It carries no job (the job is created after it, in the same transaction and under the thread's lock, so
    nothing comes between them), which is why a job stream's filter would skip it.
    """
    event = selectors.event_list(thread=job.thread, after=before - 1).filter(sequence=before).first()
    if event is None:
        return None
    payload = event_payload(event)
    is_input = payload["type"] == "message.created" and payload["data"].get("id") == job.input.get("message")
    return payload if is_input else None


def job_stream_response(
    job: Job, *, after: int = 0, cancel_on_disconnect: bool = False, with_input_message: bool = False
) -> HttpResponse | StreamingHttpResponse:
    """One job's events after ``after``, ending with its final event; 204 when it ended and all were sent.

    Used by ``GET jobs/{id}/stream`` and, ``with_input_message``, by the message-posting routes with
    ``?stream=true``: their stream starts with the caller's own ``message.created``, then the job's whole life.
    """
    first = selectors.event_list(thread=job.thread, after=after, job_id=job.pk).values_list("sequence", flat=True)
    first_sequence = first.first()
    if first_sequence is None and job.is_final:
        return HttpResponse(status=204)
    # Nothing of this job comes before its first event: skip reading the thread's earlier history.
    start = max(after, (first_sequence or 1) - 1)
    message = _input_message_event(job, before=start) if with_input_message and first_sequence else None
    return event_stream_response(
        thread_id=job.thread_id,
        after=start,
        job_id=job.pk,
        cancel_on_disconnect=cancel_on_disconnect,
        prelude=[message] if message else [],
    )


class CancelOnDisconnectQuerySerializer(serializers.Serializer):
    cancel_on_disconnect = serializers.BooleanField(required=False, default=False, help_text=CANCEL_ON_DISCONNECT_HELP)


# --- Views and their schema ------------------------------------------------------------------------------


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(ProblemSerializer, description=description)


STREAM_EXAMPLE = (
    'id: 1\nevent: message.created\ndata: {"id":1,"type":"message.created","thread":"…","job":null,…}\n\n'
    'event: stream.mode\ndata: {"type":"stream.mode","data":{"mode":"live"}}\n\n'
    ": keep-alive\n\n"
    'id: 2\nevent: job.queued\ndata: {"id":2,"type":"job.queued",…}\n\n'
)


# OpenAPI 3.0 cannot say "a stream of JSON values", so the 200 is a string in the event-stream format (not JSON)
# whose frames the description spells out, and ``x-sse-data`` gives the schema of each frame's ``data:`` line:
# an Event (the component the event log's list uses), or the one stream.mode frame.
STREAM_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "event-stream",
    "description": "Server-sent events, not JSON: frames separated by a blank line, each `id: <event id>` (none "
    "on `stream.mode`), `event: <type>` and `data: <the event as one line of JSON>`; lines starting with `:` are "
    "keep-alive comments. `x-sse-data` is the schema of a frame's data.",
    "x-sse-data": {
        "oneOf": [
            {"$ref": "#/components/schemas/Event"},
            {
                "type": "object",
                "description": "Sent once, without an id, when the replay ends and live events begin.",
                "properties": {
                    "type": {"type": "string", "enum": ["stream.mode"]},
                    "data": {
                        "type": "object",
                        "properties": {"mode": {"type": "string", "enum": ["live"]}},
                        "required": ["mode"],
                    },
                },
                "required": ["type", "data"],
            },
        ]
    },
}


def _id_parameter(what: str) -> OpenApiParameter:
    return OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH, description=f"The {what}'s id.")


STREAM_PARAMETERS = [
    TENANT_PARAMETER,
    OpenApiParameter(
        LAST_EVENT_ID_HEADER,
        int,
        OpenApiParameter.HEADER,
        description="Resume after this event id (EventSource sends it when it reconnects).",
    ),
    OpenApiParameter(
        "last_event_id", int, OpenApiParameter.QUERY, description=f"The same as the {LAST_EVENT_ID_HEADER} header."
    ),
]


def _stream_ok(description: str) -> dict[Any, Any]:
    return {
        (200, "text/event-stream"): OpenApiResponse(
            STREAM_SCHEMA,
            description=description,
            examples=[OpenApiExample("A stream", value=STREAM_EXAMPLE, status_codes=[200])],
        ),
        (400, "application/problem+json"): _problem(
            "last_event_id is not a non-negative integer, or is ahead of the thread's log."
        ),
        (404, "application/problem+json"): _problem("No such thread or job, or not visible to the caller."),
    }


class _StreamView(TenantApiView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonWhateverAccepted

    def last_event_id(self, request: Request, *, latest: int) -> int:
        raw = request.headers.get(LAST_EVENT_ID_HEADER) or request.query_params.get("last_event_id") or "0"
        if not raw.isdigit():
            raise exceptions.ValidationError({"last_event_id": "A non-negative integer."})
        after = int(raw)
        if after > latest:
            raise exceptions.ValidationError(
                {"last_event_id": f"{after} is ahead of the thread's log (its latest event is {latest})."}
            )
        return after


class ThreadStreamView(_StreamView):
    @extend_schema(
        summary="Stream a thread's events (SSE)",
        description="Server-sent events: the events after `Last-Event-ID` (all without it), then a "
        '`stream.mode` event (`{"mode": "live"}`, no id), then live events — each exactly once, in order. '
        "`: keep-alive` comments while quiet. Closing the stream does not stop any job.",
        parameters=[_id_parameter("thread"), *STREAM_PARAMETERS],
        responses=_stream_ok("An endless text/event-stream of the thread's events."),
    )
    def get(self, request: Request, tenant: str, pk: uuid.UUID) -> StreamingHttpResponse:
        thread = selectors.thread_get(principal=self.principal, thread_id=pk)
        return event_stream_response(
            thread_id=thread.pk, after=self.last_event_id(request, latest=thread.last_sequence)
        )


class JobStreamView(_StreamView):
    @extend_schema(
        summary="Stream a job's events (SSE), until it ends",
        description="Like the thread's stream, but only this job's events; the stream closes after the job's "
        "final event (`job.succeeded`, `job.failed`, `job.cancelled` or `job.expired`). A finished job whose "
        "events were all received answers 204, which makes EventSource stop reconnecting. Closing the stream "
        "does not stop the job, unless `cancel_on_disconnect=true`.",
        parameters=[_id_parameter("job"), *STREAM_PARAMETERS, CancelOnDisconnectQuerySerializer],
        responses={
            **_stream_ok("A text/event-stream of the job's events, ending with its final event."),
            204: OpenApiResponse(description="The job has ended and every one of its events was received."),
        },
    )
    def get(self, request: Request, tenant: str, pk: uuid.UUID) -> HttpResponse | StreamingHttpResponse:
        query = CancelOnDisconnectQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = job_get(principal=self.principal, job_id=pk)
        after = self.last_event_id(request, latest=job.thread.last_sequence)
        return job_stream_response(job, after=after, cancel_on_disconnect=query.validated_data["cancel_on_disconnect"])
