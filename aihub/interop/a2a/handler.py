"""The A2A request handler over aihub's jobs: the SDK's ``RequestHandler`` interface, answered from the database.

The SDK's default handler runs an ``AgentExecutor`` in the web process and keeps tasks in a store of its own;
aihub's agents run on the Celery workers and its jobs are the tasks, so this handler submits with the same
service call as the native API (``turn_submit``), waits and streams through the thread's event path
(``jobs.selectors.job_wait``, ``conversation.job_events``: channel-layer wake-ups, no polling), and reads tasks
back from the jobs. Every lookup goes through ``job_list`` of the caller's principal, limited to this agent:
another tenant's task, or one the caller may not see, is not found.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers import RequestHandler
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import (
    A2AError,
    InvalidParamsError,
    InvalidRequestError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from a2a.utils.task import validate_page_size
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import DateTimeField
from django.db.models.functions import Coalesce
from django.http import Http404
from google.protobuf.json_format import MessageToDict
from rest_framework import exceptions
from starlette.requests import Request

from agents.models import Agent
from aihub.access.principal import WRITE_SCOPE, Principal
from aihub.conf import aihub_settings
from aihub.interop.a2a import convert
from aihub.interop.a2a.card import agent_card
from aihub.interop.conversation import job_events, turn_submit
from jobs import services as job_services
from jobs.models import Artifact, Job, JobPushConfig, JobStatus
from jobs.selectors import JOB_WAIT_MAX_SECONDS, artifact_list, job_list, job_wait
from threads.models import Thread
from threads.selectors import thread_get

CALLER = "aihub.a2a.caller"
"""Where the ASGI wrapper leaves the authenticated :class:`Caller` in the request's scope."""
CANCEL_WAIT_SECONDS = 10.0
"""How long CancelTask waits for a running job's runner to stop it, to answer with the canceled task."""


@dataclass(frozen=True)
class Caller:
    principal: Principal
    agent: Agent
    base_url: str


class CallerContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's call context, carrying the caller the ASGI wrapper authenticated."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[CALLER] = request.scope[CALLER]
        return context


def _caller(context: ServerCallContext, *, write: bool = False) -> Caller:
    caller: Caller = context.state[CALLER]
    scopes = caller.principal.scopes
    if write and scopes is not None and WRITE_SCOPE not in scopes:
        raise InvalidRequestError(message=f"This access token lacks the '{WRITE_SCOPE}' scope.")
    return caller


def _error_text(exc: Exception) -> str:
    if isinstance(exc, exceptions.APIException):
        return str(exc.detail)
    if isinstance(exc, DjangoValidationError):
        return "; ".join(exc.messages)
    return str(exc)


# --- Reads and writes (ORM work, off the event loop) ---------------------------------------------------------


def _job_for(caller: Caller, task_id: str) -> Job:
    try:
        key = uuid.UUID(task_id)
    except ValueError:
        raise TaskNotFoundError(message=f"Task {task_id!r} was not found.") from None
    job = job_list(principal=caller.principal).filter(pk=key, agent=caller.agent).first()
    if job is None:
        raise TaskNotFoundError(message=f"Task {task_id!r} was not found.")
    return job


def _task_of(job: Job, history_length: int | None = None) -> Task:
    fresh = Job.objects.select_related("agent").get(pk=job.pk)
    return convert.job_task(fresh, artifacts=list(artifact_list(job=fresh)), history_length=history_length)


@database_sync_to_async
def _load_task(caller: Caller, task_id: str, history_length: int | None = None) -> Task:
    return _task_of(_job_for(caller, task_id), history_length)


@database_sync_to_async
def _reload_task(job: Job) -> Task:
    return _task_of(job)


@database_sync_to_async
def _reload(job: Job) -> Job:
    return Job.objects.select_related("agent").get(pk=job.pk)


@database_sync_to_async
def _snapshot(caller: Caller, task_id: str) -> tuple[Job, Task, int]:
    """The task now, and the thread's last event sequence read before it: following from there misses nothing."""
    job = _job_for(caller, task_id)
    after = Thread.objects.filter(pk=job.thread_id).values_list("last_sequence", flat=True).get()
    return job, _task_of(job), after


def _push_checked(config: TaskPushNotificationConfig) -> TaskPushNotificationConfig:
    if not aihub_settings.WEBHOOK_SECRET:
        raise PushNotificationNotSupportedError(
            message="Push notifications are not configured on this server (AIHUB_WEBHOOK_SECRET)."
        )
    if config.HasField("authentication"):
        raise InvalidParamsError(
            message="Push notification authentication is not supported: aihub signs every notification "
            "(X-Aihub-Signature, HMAC-SHA256) and sends your token back in X-A2A-Notification-Token."
        )
    if not config.url:
        raise InvalidParamsError(message="A push notification config needs a url.")
    return config


def _push_set(job: Job, config: TaskPushNotificationConfig) -> JobPushConfig:
    try:
        return job_services.job_push_config_set(job=job, url=config.url, name=config.id, token=config.token)
    except DjangoValidationError as exc:
        raise InvalidParamsError(message=_error_text(exc)) from None
    except exceptions.APIException as exc:  # the task has ended
        raise UnsupportedOperationError(message=_error_text(exc)) from None


def _answer(job: Job, message: Message) -> dict[str, Any]:
    """The message that continues a task waiting for input, as the job's response (``POST jobs/{id}/respond``):
    a data part holding that response as is, or text (the text asked for, or approve / reject for a tool)."""
    for part in message.parts:
        if part.WhichOneof("content") == "data":
            data = MessageToDict(part.data)
            if isinstance(data, dict) and "action" in data:
                return data
    text = "\n".join(part.text for part in message.parts if part.WhichOneof("content") == "text").strip()
    request_type = (job.pending_action or {}).get("type")
    if request_type == "tool_approval":
        if text.lower() not in ("approve", "reject"):
            raise InvalidParamsError(
                message="The task waits for a tool approval: answer approve or reject, or send a data part "
                '{"action": ...} as POST jobs/{id}/respond takes it.'
            )
        return {"action": text.lower()}
    return {"action": "text", "text": text}


@database_sync_to_async
def _start(caller: Caller, request: SendMessageRequest) -> Job:
    """Start the task the message asks for: continue a task waiting for input (``task_id``), or submit a new job
    on the context's thread (``context_id``) or a new one. One transaction with its push notification config."""
    message = request.message
    if message.task_id:
        job = _job_for(caller, message.task_id)
        if job.status != JobStatus.REQUIRES_ACTION:
            raise UnsupportedOperationError(
                message=f"Task {job.pk} is {convert.TASK_STATES[job.status]!r}, not waiting for input: send a "
                "message without task_id (and with its context_id) to start a new task."
            )
        try:
            return job_services.job_respond(job=job, user=caller.principal.user, response=_answer(job, message))
        except (exceptions.APIException, DjangoValidationError) as exc:
            raise InvalidParamsError(message=_error_text(exc)) from None
    content = convert.content_of(message)
    thread = None
    if message.context_id:
        try:
            thread = thread_get(principal=caller.principal, thread_id=uuid.UUID(message.context_id))
        except (ValueError, Http404):
            raise InvalidParamsError(message=f"Context {message.context_id!r} was not found.") from None
    push = request.configuration.task_push_notification_config
    if request.configuration.HasField("task_push_notification_config"):
        _push_checked(push)
    try:
        with transaction.atomic():
            # A busy context queues the new task behind the one running (A2A has no "busy" to answer with).
            job = turn_submit(
                agent=caller.agent, user=caller.principal.user, content=content, thread=thread, busy="enqueue"
            )
            if request.configuration.HasField("task_push_notification_config"):
                _push_set(job, push)
    except A2AError:
        raise
    except (exceptions.APIException, DjangoValidationError) as exc:  # disabled agent, usage limit, bad content
        raise InvalidRequestError(message=_error_text(exc)) from None
    return job


@database_sync_to_async
def _cancel(caller: Caller, task_id: str) -> Job:
    job = _job_for(caller, task_id)
    try:
        return job_services.job_cancel(job=job)
    except exceptions.APIException as exc:  # it has ended
        raise TaskNotCancelableError(message=_error_text(exc)) from None


@database_sync_to_async
def _list(caller: Caller, request: ListTasksRequest) -> ListTasksResponse:
    size = request.page_size if request.HasField("page_size") else DEFAULT_LIST_TASKS_PAGE_SIZE
    validate_page_size(size)
    try:
        offset = int(request.page_token or 0)
    except ValueError:
        raise InvalidParamsError(message="page_token is not one this server gave.") from None
    if offset < 0:
        raise InvalidParamsError(message="page_token is not one this server gave.")
    jobs = job_list(principal=caller.principal).filter(agent=caller.agent)
    if request.context_id:
        try:
            jobs = jobs.filter(thread_id=uuid.UUID(request.context_id))
        except ValueError:
            jobs = jobs.none()
    if request.status != TaskState.TASK_STATE_UNSPECIFIED:
        jobs = jobs.filter(status__in=convert.JOB_STATUSES.get(request.status, []))
    if request.HasField("status_timestamp_after"):
        changed = Coalesce("finished_at", "started_at", "created_at", output_field=DateTimeField())
        after = request.status_timestamp_after.ToDatetime(tzinfo=UTC)
        jobs = jobs.annotate(status_at=changed).filter(status_at__gt=after)
    total = jobs.count()
    page = list(jobs[offset : offset + size])
    history = request.history_length if request.HasField("history_length") else None
    artifacts: dict[uuid.UUID, list[Any]] = {job.pk: [] for job in page}
    if request.include_artifacts:
        for artifact in Artifact.objects.filter(job__in=page).select_related("tenant").order_by("created_at", "name"):
            artifacts[artifact.job_id].append(artifact)
    return ListTasksResponse(
        tasks=[convert.job_task(job, artifacts=artifacts[job.pk], history_length=history) for job in page],
        next_page_token=str(offset + size) if offset + size < total else "",
        page_size=size,
        total_size=total,
    )


def _push_message(job: Job, config: JobPushConfig) -> TaskPushNotificationConfig:
    return TaskPushNotificationConfig(task_id=str(job.pk), id=config.name, url=config.url, token=config.token)


@database_sync_to_async
def _push_configs(caller: Caller, task_id: str, name: str | None = None) -> list[TaskPushNotificationConfig]:
    job = _job_for(caller, task_id)
    configs = JobPushConfig.objects.filter(job=job)
    if name:
        configs = configs.filter(name=name)
    return [_push_message(job, config) for config in configs]


@database_sync_to_async
def _push_create(caller: Caller, config: TaskPushNotificationConfig) -> TaskPushNotificationConfig:
    job = _job_for(caller, config.task_id)
    return _push_message(job, _push_set(job, _push_checked(config)))


@database_sync_to_async
def _push_delete(caller: Caller, task_id: str, name: str) -> None:
    job_services.job_push_config_delete(job=_job_for(caller, task_id), name=name)


# --- Waiting and following -----------------------------------------------------------------------------------


async def _until_paused_or_ended(job: Job) -> None:
    while not await job_wait(job=job, timeout=JOB_WAIT_MAX_SECONDS):
        pass  # job_wait caps one wait; the job's own expiry (and the janitor) bound the whole


async def _follow(job: Job, *, after: int) -> AsyncGenerator[Event]:
    """The job's updates after sequence ``after``, up to the one that ends or pauses it (which is sent from the
    job's fresh row, so it carries the answer, the problem or the request)."""
    async for event in job_events(job, after=after):
        if event.get("job") != str(job.pk):
            continue  # keep-alives
        if event["type"] in convert.ENDING_EVENTS:
            yield convert.final_update(await _reload(job), event)
            return
        if (update := convert.stream_update(job, event)) is not None:
            yield update


class JobRequestHandler(RequestHandler):
    """A2A's methods over the jobs of the agent the request is addressed to (see the module's docstring)."""

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        history = params.history_length if params.HasField("history_length") else None
        if history is not None and history < 0:
            raise InvalidParamsError(message="history_length must not be negative.")
        return await _load_task(_caller(context), params.id, history)

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await _list(_caller(context), params)

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        job = await _cancel(_caller(context, write=True), params.id)
        if not job.is_final:
            # The runner stops it at its next check; answer with the canceled task when that is soon.
            await job_wait(job=job, timeout=CANCEL_WAIT_SECONDS)
        return await _reload_task(job)

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        job = await _start(_caller(context, write=True), params)
        if not params.configuration.return_immediately:
            await _until_paused_or_ended(job)
        return await _reload_task(job)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        caller = _caller(context, write=True)
        job = await _start(caller, params)
        snapshot_job, task, after = await _snapshot(caller, str(job.pk))
        yield task
        async for update in _follow(snapshot_job, after=after):
            yield update

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        job, task, after = await _snapshot(_caller(context), params.id)
        if task.status.state in convert.TERMINAL_STATES:
            raise UnsupportedOperationError(message=f"Task {params.id} has ended: read it with GetTask.")
        yield task
        async for update in _follow(job, after=after):
            yield update

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        return await _push_create(_caller(context, write=True), params)

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        configs = await _push_configs(_caller(context), params.task_id, params.id or None)
        if not configs:
            raise InvalidParamsError(message=f"Task {params.task_id} has no push notification config {params.id!r}.")
        return configs[0]

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        return ListTaskPushNotificationConfigsResponse(configs=await _push_configs(_caller(context), params.task_id))

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        await _push_delete(_caller(context, write=True), params.task_id, params.id)

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        caller = _caller(context)
        return agent_card(
            caller.agent, tenant_slug=caller.principal.tenant.slug, base_url=caller.base_url, extended=True
        )
