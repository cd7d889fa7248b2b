"""WebSocket streams of thread events: one thread, or every thread the caller can see in a tenant.

Routes (threads/routing.py):

- ``WS /ws/v1/{tenant}/threads/{id}/`` — one thread's events.
- ``WS /ws/v1/{tenant}/events/`` — the events of every thread of the tenant the caller can see.

Authentication, the first that applies: ``?token=`` (an API token or OAuth2 access token — browsers cannot set
headers on a WebSocket), the session cookie (same-origin pages), or a first frame
``{"type": "auth", "token": "..."}`` within ``AIHUB["WS_AUTH_TIMEOUT_SECONDS"]``. Origins are checked by
``AllowedHostsOriginValidator`` (aihub/asgi.py). The connection is accepted first, so that a refusal can carry
one of these close codes:

- ``CLOSE_UNAUTHENTICATED`` 4401: no credentials in time, a bad/expired/revoked token, or a frame before auth.
- ``CLOSE_FORBIDDEN`` 4403: the credential may not be used here (a token restricted to another tenant, an
  OAuth2 token without the ``read`` scope).
- ``CLOSE_NOT_FOUND`` 4404: the tenant or thread does not exist *or* is not visible — the same code, so a
  connection attempt cannot probe for what it may not see.
- ``CLOSE_PROTOCOL_ERROR`` 4400: the client sent ``MAX_BAD_FRAMES`` bad frames in a row. A single bad frame
  (malformed JSON, not an object, unknown ``type``, larger than ``AIHUB["WS_MAX_FRAME_BYTES"]``) only gets an
  error frame; the connection and its subscriptions carry on.
- ``CLOSE_TRY_AGAIN_LATER`` 1013: the database was unavailable when the stream had to read it; reconnect with
  the last id after a moment. (A channel-layer outage closes nothing: the stream re-reads the database.)
- ``CLOSE_RATE_LIMITED`` 4429: the client address opened more connections than ``AIHUB["WS_CONNECT_RATE"]``
  allows (counted in the shared cache, across server processes), or the connection went on sending after its
  frames were refused ``MAX_BAD_FRAMES`` times in a row. Frames beyond ``AIHUB["WS_FRAME_RATE"]`` (per
  connection) are dropped unread, each answered with an error frame (problem 429 with ``retry_after`` seconds);
  the connection and its subscriptions carry on.

Frames out: events exactly as in the event contract (``threads.events.event_payload``: ``id``, ``type``,
``thread``, ``job``, ``agent``, ``created_at``, ``data``), each exactly once and in order per thread; the
control event ``{"type": "stream.mode", "thread": id-or-null, "data": {"mode": "live"}}`` after a replay; and
answers: ``{"type": "message.accepted", "created": bool, "job": {...}}``,
``{"type": "job.cancel.accepted", "job": {...}}``, ``{"type": "pong"}``, ``{"type": "subscribed", ...}`` and
``{"type": "error", "error": <problem details>}``. An answer repeats the ``ref`` of the frame it answers, when
the frame had one.

Frames in:

- ``{"type": "auth", "token": "..."}`` — only before authentication.
- ``{"type": "subscribe", "last_event_id": N}`` (on /events/ also ``"thread": id``): replay the events after
  ``N`` from the database, then ``stream.mode``, then live. A thread socket starts streaming at connect, from
  the query's ``?last_event_id=`` (without it the whole log is replayed); a subscribe frame for a thread that
  is already streaming on the socket does not start over: it goes on from the greater of the last id sent and
  ``N``, so a connection never sends the same event id twice. A client that wants to choose its starting point
  before anything is sent connects with ``?subscribe=manual``: the thread socket then streams nothing until
  the first subscribe frame. On /events/ a thread without a subscription still streams, from its first live
  event on, without a marker.
- ``{"type": "message.create", "content": ..., "agent": slug, "busy": ...}`` (plus the other fields of the
  REST message body; on /events/ ``thread`` names the thread, or a new thread is started) — the same service
  and checks as ``POST /threads/{id}/messages``.
- ``{"type": "job.cancel", "job": id, "mode": "immediate" | "after_turn"}``.
- ``{"type": "ping"}`` → ``{"type": "pong"}``.

A ``last_event_id`` ahead of the thread's log (greater than its latest id) is answered with an error frame
(problem 400 with ``last_event_id`` and ``latest_event_id``) and that subscription is not started: the client's
position cannot be trusted (the log was restored from an older backup, or the id belongs to another thread), so
rather than silently skipping ahead the client decides — usually ``subscribe`` with the latest id, or 0.

Closing a socket never stops a job: the stream only watches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.utils.encoders import JSONEncoder

from agents.selectors import answering_agent
from aihub.access.authentication import authenticate_bearer
from aihub.access.principal import READ_SCOPE, WRITE_SCOPE, Principal, principal_for
from aihub.api.parsers import JSONTooDeep, NullCharacter, load_json
from aihub.api.problems import exception_handler, not_found, problem
from aihub.api.throttling import LocalCounters, WindowHit, sliding_window_hit
from aihub.conf import aihub_settings
from aihub.context import request_id_var
from aihub.unavailable import log_unavailable, unavailable_dependency, unavailable_detail
from jobs.api.serializers import JobCancelSerializer, JobSerializer
from jobs.api.submission import submit_message
from jobs.selectors import job_get
from threads import selectors
from threads.api.serializers import MessageCreateSerializer
from threads.events import tenant_group, thread_group
from threads.fanout import event_hub
from threads.models import Thread
from threads.streams import LIVE_MODE_EVENT, ThreadEventStream

logger = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_RATE_LIMITED = 4429
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

MAX_BAD_FRAMES = 20
"""Bad frames in a row before the connection is closed with 4400: a client stuck in a loop, not a typo."""

NOT_VISIBLE_RECHECK_SECONDS = 5.0
"""How long /events/ trusts that a thread is invisible before asking again (the caller may be added to it)."""

Frame = dict[str, Any]


class FrameError(Exception):
    """A bad frame: answered with an error frame carrying this problem."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def _rate(setting: str | None) -> tuple[int, int] | None:
    """``"120/minute"`` as (120, 60); ``None`` or ``""`` for no limit (the format of DRF's throttle rates)."""
    if not setting:
        return None
    count, period = setting.split("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


def _frame_hit(counters: LocalCounters) -> WindowHit | None:
    """Count one frame of this connection; None when frames are not limited."""
    rate = _rate(aihub_settings.WS_FRAME_RATE)
    if rate is None:
        return None
    return sliding_window_hit(counters, "frames", limit=rate[0], duration=rate[1], now=time.time())


@sync_to_async
def _connection_allowed(address: str) -> bool:
    rate = _rate(aihub_settings.WS_CONNECT_RATE)
    if rate is None:
        return True
    key = f"throttle:ws-connect:{address}"
    return sliding_window_hit(cache, key, limit=rate[0], duration=rate[1], now=time.time()).allowed


def _last_event_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FrameError(400, "last_event_id must be a non-negative integer.")
    try:
        number = int(value)
    except ValueError:
        raise FrameError(400, "last_event_id must be a non-negative integer.") from None
    if number < 0:
        raise FrameError(400, "last_event_id must be a non-negative integer.")
    return number


# --- Database work (each call runs in a worker thread) ------------------------------------------------------


@database_sync_to_async
def _authenticate(token: str, host: str) -> tuple[Any, Any] | None:
    try:
        return authenticate_bearer(token, host=host)
    except drf_exceptions.AuthenticationFailed:
        return None


@database_sync_to_async
def _principal(user: Any, tenant_ref: str, auth: Any) -> Principal:
    return principal_for(user=user, tenant_ref=tenant_ref, auth=auth)


@database_sync_to_async
def _visible_thread(principal: Principal, thread_id: Any) -> Thread:
    try:
        return selectors.thread_get(principal=principal, thread_id=uuid.UUID(str(thread_id)))
    except ValueError:
        raise not_found("thread", thread_id) from None


@database_sync_to_async
def _can_see_thread(principal: Principal, thread_id: str) -> bool:
    return selectors.thread_list(principal=principal).filter(pk=thread_id).exists()


@database_sync_to_async
def _latest_event_id(thread_id: uuid.UUID) -> int:
    return int(Thread.objects.filter(pk=thread_id).values_list("last_sequence", flat=True).get())


@database_sync_to_async
def _message_create(principal: Principal, thread_id: Any, body: Frame) -> Frame:
    idempotency_key = body.pop("idempotency_key", None)
    serializer = MessageCreateSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    if thread_id is not None:
        thread: Thread | None = selectors.thread_get(principal=principal, thread_id=thread_id)
    else:
        principal.require("user", "threads")
        thread = None
    # The REST routes' own submission: attachments, file_urls and expiry are handled the same way.
    job, created = submit_message(
        data,
        agent=answering_agent(principal=principal, thread=thread, slug=data.get("agent")),
        thread=thread,
        user=principal.user,
        idempotency_key=str(idempotency_key) if idempotency_key else None,
        principal=principal,
    )
    return {"type": "message.accepted", "created": created, "job": JobSerializer(job).data}


@database_sync_to_async
def _job_cancel(principal: Principal, thread_id: uuid.UUID | None, job_id: Any, body: Frame) -> Frame:
    from jobs.services import job_cancel

    try:
        job = job_get(principal=principal, job_id=uuid.UUID(str(job_id)))
    except ValueError:
        raise not_found("job", job_id) from None
    if thread_id is not None and job.thread_id != thread_id:
        raise not_found("job", job_id)
    serializer = JobCancelSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    job_cancel(job=job, mode=serializer.validated_data["mode"])
    return {"type": "job.cancel.accepted", "job": JobSerializer(job_get(principal=principal, job_id=job.pk)).data}


# --- The consumers --------------------------------------------------------------------------------------------


class _EventsConsumer(AsyncWebsocketConsumer):
    """Authentication, frame parsing and per-thread streams; subclasses say what they watch."""

    # No channel of its own: events come through the process's hub (threads.fanout), which keeps one channel for
    # every stream and outlives a channel-layer outage, so a Redis restart closes no socket.
    channel_layer_alias = "aihub.threads.fanout"
    principal: Principal | None = None

    async def connect(self) -> None:
        self.streams: dict[str, ThreadEventStream] = {}
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.groups_joined: list[str] = []
        self.hub = event_hub()
        self.bad_frames = 0
        self.refused_frames = 0
        self.frame_counters = LocalCounters()
        self.auth_deadline: asyncio.Task[None] | None = None
        self.query = {key: values[-1] for key, values in parse_qs(self.scope["query_string"].decode()).items()}
        # Problems carry this as their correlation_id, and logs of this connection too.
        request_id_var.set(uuid.uuid4().hex)
        client = self.scope.get("client") or ["unknown"]
        # Counted before any credential is looked at, so guessing tokens by reconnecting is limited too.
        allowed = await _connection_allowed(str(client[0]))
        await self.accept()
        if not allowed:
            await self.close(code=CLOSE_RATE_LIMITED, reason="Too many connection attempts; retry later.")
            return

        token = self.query.get("token")
        user = self.scope.get("user")
        if token:
            await self._authenticate_with(token)
        elif user is not None and user.is_authenticated:
            await self._start(user, None)
        else:
            self.auth_deadline = asyncio.create_task(self._close_unless_authenticated())

    async def disconnect(self, code: int) -> None:
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        for group in self.groups_joined:
            await self.hub.unlisten(group, self.on_events)
        for task in self.pumps.values():
            task.cancel()  # only the watching stops: the jobs carry on
        await asyncio.gather(*self.pumps.values(), return_exceptions=True)

    # --- authentication --------------------------------------------------------------------------------

    async def _close_unless_authenticated(self) -> None:
        await asyncio.sleep(float(aihub_settings.WS_AUTH_TIMEOUT_SECONDS))
        if self.principal is None:
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="No credentials in time.")

    async def _authenticate_with(self, token: str) -> None:
        host = dict(self.scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        result = await _authenticate(token, host)
        if result is None:
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="The token is invalid, expired or revoked.")
            return
        await self._start(*result)

    async def _start(self, user: Any, auth: Any) -> None:
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        try:
            principal = await _principal(user, self.scope["url_route"]["kwargs"]["tenant"], auth)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND, reason="No such tenant.")
            return
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN, reason="This credential may not be used in this tenant.")
            return
        if principal.scopes is not None and READ_SCOPE not in principal.scopes:
            await self.close(code=CLOSE_FORBIDDEN, reason="This access token lacks the 'read' scope.")
            return
        self.principal = principal
        await self.watch()

    async def watch(self) -> None:
        raise NotImplementedError

    async def _join(self, group: str) -> None:
        self.groups_joined.append(group)
        await self.hub.listen(group, self.on_events)

    def on_events(self, events: list[dict[str, Any]]) -> None:
        """A group's live events from the hub (``[]``: re-read the database); must not block."""
        raise NotImplementedError

    # --- frames in ---------------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not await self._frame_allowed():
            return
        frame: Frame = {}
        try:
            frame = self._parse(text_data, bytes_data)
            if self.principal is None:
                if frame["type"] == "auth" and isinstance(frame.get("token"), str) and frame["token"]:
                    await self._authenticate_with(frame["token"])
                else:
                    await self.close(code=CLOSE_UNAUTHENTICATED, reason="Authenticate first.")
                return
            handler = self._handlers().get(frame["type"])
            if handler is None:
                raise FrameError(400, f"Unknown frame type {frame['type']!r}.", type_slug="unknown-frame-type")
            await handler(frame)
            self.bad_frames = 0
            return
        except FrameError as error:
            await self._send_problem(frame, error.status, error.detail, **error.extra)
        except Exception as exc:  # a service's answer (404, 409, validation) goes back to the client
            await self._send_error(frame, exc)
        self.bad_frames += 1
        if self.bad_frames >= MAX_BAD_FRAMES:
            await self.close(code=CLOSE_PROTOCOL_ERROR, reason="Too many bad frames in a row.")

    async def _frame_allowed(self) -> bool:
        hit = _frame_hit(self.frame_counters)
        if hit is None or hit.allowed:
            self.refused_frames = 0
            return True
        # Refused frames are not even parsed: a flood costs this server as little as possible.
        self.refused_frames += 1
        if self.refused_frames >= MAX_BAD_FRAMES:
            await self.close(code=CLOSE_RATE_LIMITED, reason="Too many frames; slow down.")
            return False
        retry_after = max(1, math.ceil((hit.retry_at or time.time()) - time.time()))
        detail = f"Too many frames: at most {aihub_settings.WS_FRAME_RATE}. This one was dropped."
        await self._send_problem({}, 429, detail, retry_after=retry_after)
        return False

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> Frame:
        raw = text_data.encode() if text_data is not None else (bytes_data or b"")
        if len(raw) > int(aihub_settings.WS_MAX_FRAME_BYTES):
            raise FrameError(
                413, f"Frames may have at most {aihub_settings.WS_MAX_FRAME_BYTES} bytes.", type_slug="frame-too-large"
            )
        try:
            frame = load_json(raw)
        except JSONTooDeep as exc:
            raise FrameError(400, f"The frame is {exc}.", type_slug="malformed-frame") from None
        except NullCharacter as exc:
            # PostgreSQL could store the message in neither text nor jsonb.
            raise FrameError(400, f"{exc}.", type_slug="malformed-frame") from None
        except ValueError:
            raise FrameError(400, "The frame is not valid JSON.", type_slug="malformed-frame") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise FrameError(400, 'A frame is a JSON object with a "type".', type_slug="malformed-frame")
        return frame

    def _handlers(self) -> dict[str, Callable[[Frame], Awaitable[None]]]:
        return {
            "auth": self._already_authenticated,
            "ping": self._pong,
            "subscribe": self._subscribe_frame,
            "message.create": self._message_create,
            "job.cancel": self._job_cancel,
        }

    async def _already_authenticated(self, frame: Frame) -> None:
        raise FrameError(400, "This connection is already authenticated.")

    async def _pong(self, frame: Frame) -> None:
        await self._answer(frame, {"type": "pong"})

    async def _subscribe_frame(self, frame: Frame) -> None:
        raise NotImplementedError

    def _frame_thread(self, frame: Frame) -> uuid.UUID | None:
        raise NotImplementedError

    async def _message_create(self, frame: Frame) -> None:
        self._require_write()
        body = {key: value for key, value in frame.items() if key not in ("type", "ref", "thread")}
        await self._answer(frame, await _message_create(self.principal, self._frame_thread(frame), body))

    async def _job_cancel(self, frame: Frame) -> None:
        self._require_write()
        if "job" not in frame:
            raise FrameError(400, 'job.cancel needs "job": the job\'s id.')
        body = {"mode": frame["mode"]} if "mode" in frame else {}
        thread_id = self._frame_thread(frame) if isinstance(self, ThreadConsumer) else None
        await self._answer(frame, await _job_cancel(self.principal, thread_id, frame["job"], body))

    def _require_write(self) -> None:
        assert self.principal is not None
        if self.principal.scopes is not None and WRITE_SCOPE not in self.principal.scopes:
            raise FrameError(403, f"This access token lacks the '{WRITE_SCOPE}' scope.")

    # --- frames out --------------------------------------------------------------------------------------

    async def _answer(self, frame: Frame, answer: Frame) -> None:
        if "ref" in frame:
            answer = {**answer, "ref": frame["ref"]}
        # DRF's encoder: answers carry serializer data (UUIDs, datetimes) rendered as the REST API renders them.
        await self.send(text_data=json.dumps(answer, cls=JSONEncoder))

    async def _send_problem(self, frame: Frame, status: int, detail: str, **extra: Any) -> None:
        body = problem(status=status, detail=detail, instance=self.scope["path"], **extra)
        await self._answer(frame, {"type": "error", "error": body})

    async def _send_error(self, frame: Frame, exc: Exception) -> None:
        # The API's own exception handler: the same problem (and the same logging of a 500) as over REST.
        response = exception_handler(exc, {"request": None})
        body = dict(response.data) if response is not None else {}
        body["instance"] = self.scope["path"]
        await self._answer(frame, {"type": "error", "error": body})

    # --- streams -----------------------------------------------------------------------------------------

    async def subscribe(self, thread_id: uuid.UUID, after: int, *, announce: bool = True) -> None:
        """Replay ``thread_id``'s events after ``after``, then live; replaces that thread's running stream."""
        key = str(thread_id)
        if announce:
            latest = await _latest_event_id(thread_id)
            if after > latest:
                raise FrameError(
                    400,
                    f"last_event_id {after} is ahead of the thread's log (its latest event is {latest}).",
                    type_slug="last-event-id-ahead",
                    last_event_id=after,
                    latest_event_id=latest,
                )
        running = self.streams.get(key)
        if running is not None and not self.pumps[key].done():
            # The thread is already streaming on this socket: it goes on from the greater of what it sent and
            # what the client asks for, so no event id is ever sent twice on one connection.
            running.skip_to(after)
            return
        stream = ThreadEventStream(
            thread_id=thread_id, after=after, poll_seconds=float(aihub_settings.STREAM_POLL_SECONDS)
        )
        self.streams[key] = stream
        self.pumps[key] = asyncio.create_task(self._pump(stream, announce=announce))

    async def _pump(self, stream: ThreadEventStream, *, announce: bool) -> None:
        try:
            async for event in stream.events():
                if event is LIVE_MODE_EVENT:
                    if not announce:
                        continue
                    event = {**LIVE_MODE_EVENT, "thread": str(stream.thread_id)}
                await self.send(text_data=json.dumps(event))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is not None:
                log_unavailable(dependency, exc, self.scope["path"])
                await self.close(code=CLOSE_TRY_AGAIN_LATER, reason=unavailable_detail(dependency)[:120])
                return
            logger.exception("the stream of thread %s failed", stream.thread_id)
            await self.close(code=CLOSE_INTERNAL_ERROR)


class ThreadConsumer(_EventsConsumer):
    """``WS /ws/v1/{tenant}/threads/{id}/``: one thread."""

    thread_id: uuid.UUID

    async def watch(self) -> None:
        assert self.principal is not None
        try:
            thread = await _visible_thread(self.principal, self.scope["url_route"]["kwargs"]["thread_id"])
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND, reason="No such thread.")
            return
        self.thread_id = thread.pk
        # Listening before the replay reads the log, so nothing committed meanwhile is missed.
        await self._join(thread_group(thread.pk))
        if self.query.get("subscribe") == "manual":
            return  # nothing is sent until the client's subscribe frame says from where
        try:
            after = _last_event_id(self.query.get("last_event_id", 0))
            await self.subscribe(thread.pk, after)
        except FrameError as error:
            await self._send_problem({}, error.status, error.detail, **error.extra)

    def _frame_thread(self, frame: Frame) -> uuid.UUID | None:
        named = frame.get("thread")
        if named is not None and str(named) != str(self.thread_id):
            raise FrameError(400, "This socket streams one thread; open another for a different one.")
        return self.thread_id

    async def _subscribe_frame(self, frame: Frame) -> None:
        thread_id = self._frame_thread(frame)
        assert thread_id is not None
        await self.subscribe(thread_id, _last_event_id(frame.get("last_event_id", 0)))

    def on_events(self, events: list[dict[str, Any]]) -> None:
        stream = self.streams.get(str(self.thread_id))
        if stream is not None:
            stream.offer(events)


class TenantEventsConsumer(_EventsConsumer):
    """``WS /ws/v1/{tenant}/events/``: every thread of the tenant the caller can see."""

    async def watch(self) -> None:
        assert self.principal is not None
        self.visible: set[str] = set()
        self.invisible_until: dict[str, float] = {}
        # Routed one batch at a time, in order, by a task of this socket (routing reads the database).
        self.incoming: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self.pumps["tenant"] = asyncio.create_task(self._route_incoming())
        await self._join(tenant_group(self.principal.tenant.pk))
        await self.send(text_data=json.dumps({**LIVE_MODE_EVENT, "thread": None}))

    def _frame_thread(self, frame: Frame) -> uuid.UUID | None:
        named = frame.get("thread")
        if named is None:
            return None
        try:
            return uuid.UUID(str(named))
        except ValueError:
            raise FrameError(404, "No such thread.") from None

    async def _subscribe_frame(self, frame: Frame) -> None:
        assert self.principal is not None
        thread_id = self._frame_thread(frame)
        if thread_id is None:
            raise FrameError(400, 'subscribe on /events/ needs "thread": the thread\'s id.')
        after = _last_event_id(frame.get("last_event_id", 0))
        await _visible_thread(self.principal, thread_id)
        self.visible.add(str(thread_id))
        await self.subscribe(thread_id, after)

    async def _can_see(self, thread_id: str) -> bool:
        assert self.principal is not None
        if thread_id in self.visible:
            return True
        if self.invisible_until.get(thread_id, 0) > time.monotonic():
            return False
        if await _can_see_thread(self.principal, thread_id):
            self.visible.add(thread_id)
            return True
        self.invisible_until[thread_id] = time.monotonic() + NOT_VISIBLE_RECHECK_SECONDS
        return False

    def on_events(self, events: list[dict[str, Any]]) -> None:
        self.incoming.put_nowait(events)

    async def _route_incoming(self) -> None:
        while True:
            events = await self.incoming.get()
            try:
                await self._route(events)
            except Exception:
                logger.exception("routing tenant events failed")

    async def _route(self, events: list[dict[str, Any]]) -> None:
        if not events:
            for followed in self.streams.values():
                followed.offer([])
            return
        by_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            by_thread[event["thread"]].append(event)
        for thread_id, thread_events in by_thread.items():
            if not await self._can_see(thread_id):
                continue
            if thread_id not in self.streams:
                # Not subscribed: follow the thread from this event on, each event once and in order.
                await self.subscribe(uuid.UUID(thread_id), min(e["id"] for e in thread_events) - 1, announce=False)
            self.streams[thread_id].offer(thread_events)
