"""Every write to jobs: submitting, claiming, heartbeats, finishing, cancelling, and the janitor's repairs."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from agents.handoffs import TRANSFER_TOOL
from agents.models import Agent
from agents.providers.base import CLIENT_CONFIG_PROVIDER, ClientConfig
from agents.runtime import RESPONSE_ACTIONS
from agents.selectors import agent_model
from agents.tools import client_tools_validate
from aihub import outbound, tracing
from aihub.api.problems import Conflict, problem
from aihub.celery import broker_run_id, task_send
from aihub.conf import aihub_settings
from jobs import credentials, turns, webhooks
from jobs import usage as accounting
from jobs.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    Artifact,
    ArtifactKind,
    CancelMode,
    Job,
    JobPushConfig,
    JobStatus,
)
from threads import services as thread_services
from threads.content import text_of, validate_content
from threads.events import EventType, NewEvent
from threads.models import Message, MessageRole, Thread

if TYPE_CHECKING:
    from django.contrib.auth.models import User

BusyPolicy = Literal["reject", "enqueue", "interrupt"]

logger = logging.getLogger(__name__)

_FINAL_EVENT = {
    JobStatus.SUCCEEDED: EventType.JOB_SUCCEEDED,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.CANCELLED: EventType.JOB_CANCELLED,
    JobStatus.EXPIRED: EventType.JOB_EXPIRED,
}


def _enqueue(job_id: uuid.UUID) -> None:
    """Send a committed job's task (on commit). A broker that refuses it loses nothing: the job stays queued and
    the janitor re-sends it (JOBS_RESEND_QUEUED_AFTER_SECONDS), so the request that queued it still succeeds."""
    try:
        task_send("jobs.run_job", str(job_id))
    except BrokerError as exc:
        logger.warning("job %s queued, not dispatched (the janitor re-sends it): broker unavailable: %s", job_id, exc)


def job_summary(job: Job) -> dict[str, Any]:
    """What job events carry: enough for a client to follow the job without another request (and the job's
    trace id, with tracing on)."""
    summary = {
        "id": str(job.id),
        "status": job.status,
        "agent": job.agent.slug if job.agent_id else None,
        "agent_version": job.agent_version,
        "attempts": job.attempts,
    }
    if job.trace_id:
        summary["trace_id"] = job.trace_id
    return summary


def _job_event(job: Job, event_type: EventType, **data: Any) -> NewEvent:
    return NewEvent(event_type, {**job_summary(job), **data}, job_id=job.id, agent_id=job.agent_id)


class _AlreadySubmitted(Exception):
    """Raised inside the submission's transaction to undo it when the idempotency key turns out to be taken."""

    def __init__(self, job: Job) -> None:
        self.job = job


def _earlier_submission(
    *, agent: Agent, user: User, idempotency_key: str | None, job_id: uuid.UUID | None = None
) -> Job | None:
    if job_id is not None:
        earlier = Job.objects.select_related("agent", "thread").filter(pk=job_id).first()
        if earlier is not None:
            # A retry is the same caller asking the same agent; anything else reusing the id is a mistake (or a
            # guess), and must neither start a job nor see someone else's.
            if (earlier.tenant_id, earlier.created_by_id, earlier.agent_id) != (agent.tenant_id, user.pk, agent.pk):
                raise Conflict(f"The job id {job_id} is already taken by another request.")
            return earlier
    if not idempotency_key:
        return None
    return (
        Job.objects.select_related("agent", "thread")
        .filter(tenant=agent.tenant, created_by=user, idempotency_key=idempotency_key)
        .first()
    )


def _submission_span(*, agent: Agent, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    return f"submit_job {agent.slug}", {"gen_ai.agent.name": agent.slug, "aihub.tenant.id": str(agent.tenant_id)}


# The job dispatch in a trace: the job's trace id is this span's trace (the HTTP request's, when it has a span),
# and the task's producer span is its child, so the worker's spans join the same trace.
@tracing.traced(_submission_span)
def job_submit(
    *,
    agent: Agent,
    user: User,
    content: Any,
    thread: Thread | None = None,
    busy: BusyPolicy = "reject",
    idempotency_key: str | None = None,
    additional_instructions: str = "",
    context: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
    job_id: uuid.UUID | None = None,
    webhook: str = "",
    chat_history: list[dict[str, Any]] | None = None,
    store_thread: bool = False,
    client_config: ClientConfig | None = None,
    client_tools: Sequence[dict[str, Any]] = (),
    metadata: dict[str, str] | None = None,
) -> tuple[Job, bool]:
    """Store the user's message and a queued job for it; returns (job, created).

    ``webhook``: a URL the job's final state is POSTed to (jobs.webhooks), checked here against the allowlist.
    ``client_tools``: tools the client runs itself (agents.tools.client_tools_validate, checked here against the
    agent's own tools); a call to one pauses the job in requires_action until the client answers.

    ``chat_history``: a stateless turn (jobs.turns): the client's own history instead of a thread's, run on an
    ephemeral thread, or with ``store_thread`` stored as a new thread's first messages. ``client_config``: the
    request's own model endpoint and key for this job only (jobs.credentials), its base URL checked against
    CLIENT_CONFIG_URL_ALLOWLIST; the caller's permission to bring one is the adapter's to check.

    ``metadata``: the caller's own key/value pairs (the Responses API's ``metadata``), kept in ``job.input``.

    With an idempotency key already used by this user in this tenant, the earlier job is returned and nothing
    is written. So too with a client-chosen ``job_id`` that this user already used for this agent; the same id
    used by someone else, or for another agent, is a Conflict. The busy-thread decision is made under the
    thread's row lock, so two concurrent messages with ``reject`` give exactly one job.
    """
    earlier = _earlier_submission(agent=agent, user=user, idempotency_key=idempotency_key, job_id=job_id)
    if earlier is not None:
        return earlier, False
    if thread is not None and thread.tenant_id != agent.tenant_id:
        raise ValidationError({"thread": "The thread belongs to another tenant than the agent."})
    if webhook:
        webhooks.webhook_check(webhook)
    if chat_history is not None:
        if thread is not None:
            raise ValidationError({"chat_history": "Give chat_history or thread, not both: a thread has its own."})
        chat_history = turns.chat_history_checked(history=chat_history, tenant_id=agent.tenant_id, user=user)
    elif store_thread:
        raise ValidationError({"store_thread": "Only with chat_history."})
    if client_config is not None:
        client_config_check(client_config)
    reserved = [*agent.tools, TRANSFER_TOOL, "remember"]  # the agent's own tools are never shadowed
    checked_tools = client_tools_validate(list(client_tools), reserved=reserved) if client_tools else []
    try:
        job = _submit(
            agent=agent,
            user=user,
            content=content,
            thread=thread,
            busy=busy,
            idempotency_key=idempotency_key or None,
            additional_instructions=additional_instructions,
            context=context or {},
            expires_at=expires_at,
            job_id=job_id,
            webhook=webhook,
            chat_history=chat_history,
            store_thread=store_thread,
            client_config=client_config,
            client_tools=checked_tools,
            metadata=metadata or {},
        )
    except _AlreadySubmitted as taken:
        return taken.job, False
    except IntegrityError:
        # The same key won a race on another connection a moment ago; our transaction (savepoint) is undone,
        # so reading its job is safe here, outside it.
        earlier = _earlier_submission(agent=agent, user=user, idempotency_key=idempotency_key, job_id=job_id)
        if earlier is None:
            raise
        return earlier, False
    return job, True


@transaction.atomic
def _submit(
    *,
    agent: Agent,
    user: User,
    content: Any,
    thread: Thread | None,
    busy: BusyPolicy,
    idempotency_key: str | None,
    additional_instructions: str,
    context: dict[str, Any],
    expires_at: datetime | None,
    job_id: uuid.UUID | None = None,
    webhook: str = "",
    chat_history: list[dict[str, Any]] | None = None,
    store_thread: bool = False,
    client_config: ClientConfig | None = None,
    client_tools: list[dict[str, Any]] | None = None,
    metadata: dict[str, str] | None = None,
) -> Job:
    if not agent.enabled:
        raise Conflict(f"Agent {agent.slug!r} is disabled.")
    blocks = validate_content(content)
    if thread is None:
        thread = thread_services.thread_create(
            tenant=agent.tenant,
            created_by=user,
            title=text_of(blocks)[:80],
            agent_ids=[agent.id],
            ephemeral=chat_history is not None and not store_thread,
        )
        if chat_history and store_thread:
            _history_store(thread=thread, agent=agent, user=user, history=chat_history)
    _lock_thread(thread.pk)
    locked = thread  # its counter is read by the write that reserves the numbers, not from this instance
    # Again under the lock: a retry of the same request to the same thread waited here for the first one, which
    # has committed by now; it gets that job instead of a 409 from the busy check below.
    earlier = _earlier_submission(agent=agent, user=user, idempotency_key=idempotency_key, job_id=job_id)
    if earlier is not None:
        raise _AlreadySubmitted(earlier)
    thread_services.thread_member_add(thread=locked, agent_id=agent.id)
    active = list(Job.objects.filter(thread=locked, status__in=ACTIVE_STATUSES).select_related("agent", "thread"))
    if active and busy == "reject":
        raise Conflict(f"The thread has an active job ({active[0].id}); send busy='enqueue' or 'interrupt'.")
    if busy == "interrupt":
        for other in active:
            job_cancel(job=other, mode=CancelMode.IMMEDIATE)

    message_id = uuid.uuid4()
    given: dict[str, Any] = {
        "message": str(message_id),
        "content": blocks,
        "additional_instructions": additional_instructions,
        "context": context,
    }
    if chat_history is not None:
        given["supplied_history"] = True
        if not store_thread:
            # Read by the runner in place of the thread's messages; dropped from the row when the job ends.
            given["chat_history"] = chat_history
    if client_config is not None:
        given["client_config"] = True  # only that there is one: the credentials travel sealed (jobs.credentials)
    if client_tools:
        given["client_tools"] = client_tools
    if metadata:
        given["metadata"] = metadata  # only when given: every other job's input stays as it was
    job = Job.objects.create(
        id=job_id or uuid.uuid4(),
        tenant_id=agent.tenant_id,
        thread=locked,
        agent=agent,
        agent_version=agent.version,
        created_by=user,
        input=given,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        webhook=webhook,
        max_attempts=settings.JOBS_MAX_ATTEMPTS,
        model=_model_of(agent, client_config=client_config is not None),
        trace_id=tracing.current_trace_id(),
    )
    # Refused over a usage limit, the 429 undoes everything above (the thread too, when this made it).
    job.usage_warnings = tuple(
        accounting.usage_admit(job=job, user=user, agent_slug=agent.slug, input_tokens=len(text_of(blocks)) // 4 + 1)
    )
    # The message, then its message.created and the job's job.queued in one write of the log.
    thread_services.message_create(
        thread=locked,
        role=MessageRole.USER,
        content=blocks,
        author=user,
        message_id=message_id,
        followed_by=[_job_event(job, EventType.JOB_QUEUED)],
    )
    job.first_event_id = locked.last_sequence
    if client_config is not None:
        # Last before the commit, so that a cache that refuses it undoes the submission; the task goes out after.
        credentials.client_config_seal(job_id=job.id, config=client_config)
    transaction.on_commit(partial(_enqueue, job.id))
    return job


def _history_store(*, thread: Thread, agent: Agent, user: User, history: list[dict[str, Any]]) -> None:
    """A supplied history as a new thread's first messages (``store_thread``), its agent names kept in metadata."""
    for message in history:
        extra = {name: message[name] for name in ("agent", "caller_agent", "timestamp") if message.get(name)}
        thread_services.message_create(
            thread=thread,
            role=message["role"],
            content=message["content"],
            author=user if message["role"] == MessageRole.USER else None,
            agent_id=agent.id if message["role"] == MessageRole.ASSISTANT else None,
            metadata={"supplied": extra} if extra else None,
        )


def client_config_check(config: ClientConfig) -> None:
    """A ValidationError naming ``client_config.base_url`` unless it is under CLIENT_CONFIG_URL_ALLOWLIST (and,
    unless OUTBOUND_ALLOW_PRIVATE_NETWORKS, on a public address). Never quotes the key or the headers."""
    field = "client_config.base_url"
    parts = urlsplit(config.base_url)
    if parts.username is not None or parts.password is not None:
        # The URL is not echoed: what it carries may be a credential.
        raise ValidationError({field: "Credentials in the URL are not accepted; send the key as api_key."})
    try:
        outbound.check_outbound_url(config.base_url, allowlist=list(aihub_settings.CLIENT_CONFIG_URL_ALLOWLIST))
    except outbound.OutboundURLError as exc:
        raise ValidationError({field: str(exc)}) from None


def _model_of(agent: Agent, *, client_config: bool = False) -> str:
    """The model a job of ``agent`` is accounted to (agents.selectors.agent_model).

    With the request's own endpoint (client_config) it is ``client_config/<model>``: not the operator's model, so
    neither its prices nor the limits on the operator's models apply to it.
    """
    model = agent_model(agent)
    if client_config and model:
        return f"{CLIENT_CONFIG_PROVIDER}/{model.partition('/')[2] or model}"
    return model


@transaction.atomic
def job_claim(*, job_id: uuid.UUID, worker: str) -> Job | None:
    """Move a queued job to running for this worker, or return None (someone else has it, or it must wait).

    A job waits while another job of its thread is running or waiting for action, or an older one is queued:
    the thread's row lock makes that check and the conditional update one decision. A job past its expiry is
    expired instead of started.
    """
    job = Job.objects.select_related("agent", "thread").filter(pk=job_id).first()
    if job is None or job.status != JobStatus.QUEUED:
        return None
    _lock_thread(job.thread_id)
    now = timezone.now()
    if job.expires_at is not None and job.expires_at <= now:
        job_finish(job=job, status=JobStatus.EXPIRED)
        return None
    # By status, not only by age: a job the janitor re-queued is older than the one that may be running now.
    ahead = (
        Job.objects.filter(thread_id=job.thread_id)
        .filter(
            Q(status__in=(JobStatus.RUNNING, JobStatus.REQUIRES_ACTION))
            | Q(status=JobStatus.QUEUED, created_at__lt=job.created_at)
        )
        .exclude(pk=job.pk)
    )
    start = {
        "status": JobStatus.RUNNING,
        "worker": worker[:200],
        "started_at": now,
        "heartbeat_at": now,
        "attempts": job.attempts + 1,
        "cancel_requested": "",
    }
    # One conditional UPDATE decides: still queued, on the attempt read above (so the row in hand is the row
    # claimed, with no re-read), and nothing ahead of it on the thread (stable under the thread's lock).
    if (
        not Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, attempts=job.attempts)
        .filter(~Exists(ahead))
        .update(**start)
    ):
        return None
    for field, value in start.items():
        setattr(job, field, value)
    thread_services.events_append(thread=job.thread, events=[_job_event(job, EventType.JOB_STARTED)])
    return job


def _lock_thread(thread_id: uuid.UUID) -> None:
    """Take the thread's row lock. Every change of a job's status holds it, and takes it before the job's row:
    one lock order everywhere (thread, then job), so a cancel, an interrupt and a finishing runner queue up
    instead of deadlocking; and under it a job's status is stable.

    SQLite has no row locks: its transactions take the database's write lock at BEGIN (IMMEDIATE), which
    serialises them all the more, so there is nothing to ask for.
    """
    if connection.features.has_select_for_update:
        Thread.objects.select_for_update().filter(pk=thread_id).values_list("pk", flat=True).first()


def _owned(job: Job) -> QuerySet[Job]:
    """The job's row while it is still this claim's: running, on the attempt the runner holds.

    A runner that stalled past the stale limit may find the janitor gave its job to another worker; it must
    then neither heartbeat nor finish it, or the job would run (and end) twice.
    """
    return Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts)


def job_heartbeat(*, job: Job) -> bool:
    """Record that the runner of this claim is alive; False when the claim is no longer its own."""
    return bool(_owned(job).update(heartbeat_at=timezone.now()))


def job_control(*, job: Job) -> str | None:
    """What the runner of this claim should do next: '' carry on, 'immediate' or 'after_turn' (a cancellation
    was requested), or None (the claim is lost: stop without touching the job)."""
    # The statement of ``_owned(job)``, written out: a runner asks this with every batch of events it writes,
    # and compiling the queryset cost several times running it.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT cancel_requested FROM {Job._meta.db_table} WHERE id = %s AND status = %s AND attempts = %s",  # noqa: S608
            [Job._meta.pk.get_db_prep_value(job.pk, connection), JobStatus.RUNNING.value, job.attempts],
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])


class _ClaimLost(Exception):
    """Raised inside a runner's write to undo it (sequence numbers too) when the claim turns out to be lost."""


def job_events_append(*, job: Job, events: list[NewEvent]) -> str | None:
    """Append a running job's events while its claim holds. Returns what ``job_control`` would (so a runner
    that writes learns of a cancellation without asking): None, with nothing written, once the claim is lost."""
    try:
        with transaction.atomic():
            # Reserving the numbers takes the thread's lock (see _lock_thread), under which the claim is checked.
            first = thread_services.events_reserve(thread_id=job.thread_id, count=len(events))
            control = job_control(job=job)
            if control is None:
                raise _ClaimLost
            thread_services.events_insert(thread=job.thread, events=events, first=first)
    except _ClaimLost:
        return None
    return control


def _reply_create(
    job: Job,
    content: list[dict[str, Any]],
    *,
    message_id: uuid.UUID | None = None,
    followed_by: Sequence[NewEvent] = (),
) -> Message:
    return thread_services.message_create(
        thread=job.thread,
        role=MessageRole.ASSISTANT,
        content=content,
        agent_id=job.agent_id,
        job_id=job.id,
        message_id=message_id,
        followed_by=followed_by,
    )


@transaction.atomic
def job_reply(*, job: Job, content: list[dict[str, Any]]) -> Message | None:
    """Store a complete assistant message of a running job while its claim holds; None once it is lost."""
    _lock_thread(job.thread_id)
    if not _owned(job).exists():
        return None
    return _reply_create(job, content)


@transaction.atomic
def job_finish(
    *,
    job: Job,
    status: JobStatus,
    output: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    claimed: bool = False,
    reply: list[dict[str, Any]] | None = None,
) -> bool:
    """Put a job in a final state and append its final event; False when it was already final.

    ``claimed``: the caller is the runner of the job's current attempt; it only finishes the job while that
    claim holds (see ``_owned``), and a run that would succeed ends ``cancelled`` when a cancellation was asked
    for meanwhile (``after_turn`` comes after the last reply). ``reply``: the run's last assistant message,
    stored in the same transaction (and the job's output names it).
    """
    if reply is not None and not claimed:
        raise ValueError("Only the runner of the job's claim stores its reply.")
    _lock_thread(job.thread_id)
    if claimed:
        # Under the thread's lock the claim cannot be lost from here on: the update and the reply below land.
        cancel_requested = _owned(job).values_list("cancel_requested", flat=True).first()
        if cancel_requested is None:
            return False
        if cancel_requested and status == JobStatus.SUCCEEDED:
            status = JobStatus.CANCELLED
    now = timezone.now()
    changes: dict[str, Any] = {"status": status, "finished_at": now}
    reply_id = uuid.uuid4()
    if reply is not None:
        reply = validate_content(reply)
        output = {"message": str(reply_id), "content": reply}
    if output is not None:
        changes["output"] = output
    # Every ended job is accounted: tokens (those of a pause when the run gives none), priced at the catalogue's
    # prices of its model; the final event carries the same usage.
    priced, cost = accounting.usage_priced(model=job.model, usage=usage if usage is not None else job.usage)
    changes.update(usage=priced, input_tokens=priced["input_tokens"], output_tokens=priced["output_tokens"], cost=cost)
    if error is not None:
        changes["error"] = error
    if "chat_history" in (job.input or {}):
        # A stateless turn's history was only needed to run it: it leaves the row as the job ends.
        changes["input"] = {k: v for k, v in job.input.items() if k != "chat_history"}
    # A final job waits for nothing and will not resume (its request stays in the job.requires_action event).
    changes["pending_action"] = None
    changes["resume_state"] = None
    rows = _owned(job) if claimed else Job.objects.filter(pk=job.pk).exclude(status__in=FINAL_STATUSES)
    if not rows.update(**changes):
        return False
    # The row now holds exactly these values: the instance takes them without a re-read.
    for field, value in changes.items():
        setattr(job, field, value)
    accounting.usage_settle(job=job)
    data: dict[str, Any] = {"usage": job.usage}
    if job.output:
        data["output"] = job.output
    if job.error:
        data["error"] = job.error
    if turns.is_stateless(job):
        # The reply is written below, with this event: it is shown as it will be stored.
        last = Message(pk=reply_id, role=MessageRole.ASSISTANT, content=reply, created_at=now) if reply else None
        agent_slug = job.agent.slug if job.agent_id else None
        data.update(turns.turn_summary(job, reply=turns.message_body(last, agent=agent_slug) if last else None))
    if job.input.get("client_config"):
        transaction.on_commit(partial(credentials.client_config_drop, job_id=job.pk))
    final = _job_event(job, _FINAL_EVENT[status], **data)
    if reply is not None:
        # The reply and the final event in one write: a follower sees the message, then the end.
        _reply_create(job, reply, message_id=reply_id, followed_by=[final])
    else:
        thread_services.events_append(thread=job.thread, events=[final])
    if claimed:
        # A turn the runner finished: the thread as it left it, to look back at and fork from (one INSERT).
        thread_services.checkpoint_record(thread_id=job.thread_id, job_id=job.pk, agent_id=job.agent_id)
    transaction.on_commit(partial(job_start_next, thread_id=job.thread_id))
    if job.webhook:
        transaction.on_commit(partial(webhooks.webhook_enqueue, job_id=job.pk))
    return True


@transaction.atomic
def job_await(*, job: Job, request: dict[str, Any], state: dict[str, Any], usage: dict[str, Any]) -> bool:
    """Pause a running job until a person answers ``request``: requires_action, with the request and the
    agent's ``state`` stored on the job and a ``job.requires_action`` event; the worker is then free.

    Only while this runner's claim holds and no cancellation was asked for; False otherwise (the runner then
    honours the cancellation, or stops because its claim is lost).
    """
    if request.get("type") not in RESPONSE_ACTIONS:
        raise ValueError(f"Unknown request type {request.get('type')!r}; expected one of {sorted(RESPONSE_ACTIONS)}.")
    pending = {**request, "requested_at": timezone.now().isoformat()}
    _lock_thread(job.thread_id)
    paused = (
        _owned(job)
        .filter(cancel_requested="")
        .update(
            status=JobStatus.REQUIRES_ACTION,
            pending_action=pending,
            resume_state={"state": state},
            usage=usage,
            worker="",
            # No heartbeat while nobody runs it: the janitor's stale-worker repair only looks at running jobs.
            heartbeat_at=None,
        )
    )
    if not paused:
        return False
    job.refresh_from_db()
    thread_services.events_append(
        thread=job.thread, events=[_job_event(job, EventType.JOB_REQUIRES_ACTION, pending_action=pending)]
    )
    return True


@transaction.atomic
def job_respond(*, job: Job, user: User | None, response: dict[str, Any]) -> Job:
    """Answer a job waiting in requires_action and queue it to resume: the same job carries on.

    ``response`` is ``{"action": ...}`` with the action's fields (see ``agents.runtime.Resume``). A job that
    is not waiting (never was, already answered, ended) is a 409; an action that does not fit the request is a
    ValidationError. The conditional update makes two concurrent answers give exactly one resume.
    """
    _lock_thread(job.thread_id)
    locked = Job.objects.select_for_update().select_related("agent", "thread").get(pk=job.pk)
    if locked.status != JobStatus.REQUIRES_ACTION or not locked.pending_action:
        raise Conflict(f"The job is not waiting for a response ({locked.status}).")
    if locked.expires_at is not None and locked.expires_at <= timezone.now():
        # It would be expired at its claim anyway; say so now rather than accept an answer that goes nowhere.
        raise Conflict("The job expired while waiting for a response.")
    request = {k: v for k, v in locked.pending_action.items() if k != "requested_at"}
    allowed = RESPONSE_ACTIONS.get(request.get("type", ""), frozenset())
    if response.get("action") not in allowed:
        raise ValidationError(
            {"action": f"The job waits for {request.get('type')!r}; answer with one of: {', '.join(sorted(allowed))}."}
        )
    resume_state = {
        **(locked.resume_state or {}),
        "request": request,
        "response": response,
        "responded_by": user.pk if user is not None else None,
        "responded_at": timezone.now().isoformat(),
    }
    Job.objects.filter(pk=locked.pk, status=JobStatus.REQUIRES_ACTION).update(
        status=JobStatus.QUEUED,
        pending_action=None,
        resume_state=resume_state,
        # attempts counts claims (it tells one claim's runner from the next), so the resumed run's claim adds
        # one; the retry budget for lost workers stays what it was.
        max_attempts=F("max_attempts") + 1,
    )
    locked.refresh_from_db()
    thread_services.events_append(
        thread=locked.thread, events=[_job_event(locked, EventType.JOB_QUEUED, resumed=True, response=response)]
    )
    transaction.on_commit(partial(_enqueue, locked.pk))
    return locked


def job_start_next(*, thread_id: uuid.UUID) -> None:
    """Send the oldest waiting job of a thread to the workers (claiming decides whether it may run yet)."""
    waiting = (
        Job.objects.filter(thread_id=thread_id, status=JobStatus.QUEUED)
        .order_by("created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if waiting is not None:
        _enqueue(waiting)


@transaction.atomic
def job_cancel(*, job: Job, mode: CancelMode | str = CancelMode.IMMEDIATE) -> Job:
    """Cancel a job: at once when it is not running, else at the runner's next check (``immediate``) or at
    the end of the current turn (``after_turn``). A finished job is a 409."""
    mode = CancelMode(mode)
    _lock_thread(job.thread_id)
    locked = Job.objects.select_for_update().select_related("agent", "thread").get(pk=job.pk)
    if locked.is_final:
        raise Conflict(f"The job has already ended ({locked.status}).")
    if locked.status == JobStatus.RUNNING:
        Job.objects.filter(pk=locked.pk).update(cancel_requested=mode)
        locked.cancel_requested = mode
    else:
        job_finish(job=locked, status=JobStatus.CANCELLED)
        locked.refresh_from_db()
    return locked


@transaction.atomic
def job_push_config_set(*, job: Job, url: str, name: str = "", token: str = "") -> JobPushConfig:
    """Push the job's final state to ``url`` (checked against the webhook allowlist): it becomes the job's webhook,
    replacing an earlier config. A job that has ended is a 409: its notification is not coming."""
    webhooks.webhook_check(url)
    _lock_thread(job.thread_id)
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if locked.is_final:
        raise Conflict(f"The job has already ended ({locked.status}).")
    Job.objects.filter(pk=locked.pk).update(webhook=url)
    job.webhook = url
    config, _ = JobPushConfig.objects.update_or_create(
        job=locked, defaults={"tenant_id": locked.tenant_id, "name": name or str(locked.pk), "url": url, "token": token}
    )
    return config


@transaction.atomic
def job_push_config_delete(*, job: Job, name: str) -> bool:
    """Stop pushing the job's final state (its webhook goes too); False when it has no config of that name."""
    _lock_thread(job.thread_id)
    deleted, _ = JobPushConfig.objects.filter(job=job, name=name).delete()
    if deleted:
        Job.objects.filter(pk=job.pk).exclude(status__in=FINAL_STATUSES).update(webhook="")
    return bool(deleted)


def job_fail_problem(*, job: Job, detail: str, status: int = 500, type_slug: str = "job-failed") -> dict[str, Any]:
    return problem(status=status, detail=detail, instance=f"/jobs/{job.id}", type_slug=type_slug, title="Job failed")


def _repair_stale(*, job_id: uuid.UUID, stale_before: datetime) -> str:
    """Retry, fail or cancel one job whose worker stopped heartbeating; returns what was done ('' nothing)."""
    thread_id = Job.objects.filter(pk=job_id).values_list("thread_id", flat=True).first()
    if thread_id is None:
        return ""
    _lock_thread(thread_id)
    # Locked and re-checked: a worker that came back to life meanwhile keeps its job.
    job = (
        Job.objects.select_for_update()
        .select_related("agent", "thread")
        .filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
        .first()
    )
    if job is None:
        return ""
    if job.cancel_requested:
        # Nobody is left to honour the request; honour it here instead of running the job again.
        job_finish(job=job, status=JobStatus.CANCELLED)
        return "cancelled"
    if job.attempts < job.max_attempts:
        Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, worker="", heartbeat_at=None)
        job.refresh_from_db()
        thread_services.events_append(thread=job.thread, events=[_job_event(job, EventType.JOB_QUEUED, retry=True)])
        transaction.on_commit(partial(_enqueue, job.pk))
        return "retried"
    job_finish(
        job=job,
        status=JobStatus.FAILED,
        error=job_fail_problem(
            job=job,
            detail=f"The worker running this job stopped responding (attempt {job.attempts} of {job.max_attempts}).",
            status=503,
            type_slug="worker-lost",
        ),
    )
    return "failed"


BROKER_RUN_ID_CACHE_KEY = "jobs:janitor:broker-run-id"


def _broker_restarted() -> bool:
    """Whether the broker restarted since the janitor last looked (it may have lost its task messages).

    None remembered counts as a restart: the cache is Redis too, and a Redis that restarted without persistence
    forgot the id along with the messages. A Redis that restarted with its append-only file kept both, and
    re-sending then only costs a few refused duplicate claims.
    """
    run_id = broker_run_id()
    if run_id is None or cache.get(BROKER_RUN_ID_CACHE_KEY) == run_id:
        return False
    cache.set(BROKER_RUN_ID_CACHE_KEY, run_id, timeout=None)
    return True


def janitor_run(*, now: datetime | None = None) -> dict[str, int]:
    """Repair what workers left behind: retry or fail jobs whose heartbeat went stale, expire overdue jobs,
    re-send queued jobs whose task message was lost (all of them at once when the broker restarted), and purge
    the results of ended jobs past their expiry and the retention period (JOBS_RESULT_RETENTION_SECONDS) and
    what stateless turns left on their ephemeral threads (JOBS_STATELESS_RETENTION_SECONDS; counted as purged).
    Safe to run anywhere, any number of times."""
    now = now or timezone.now()
    counts = {"retried": 0, "failed": 0, "cancelled": 0, "expired": 0, "resent": 0, "purged": 0}
    stale_before = now - timedelta(seconds=settings.JOBS_STALE_AFTER_SECONDS)
    for job_id in Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            done = _repair_stale(job_id=job_id, stale_before=stale_before)
        if done:
            counts[done] += 1
    for job in Job.objects.filter(
        status__in=(JobStatus.QUEUED, JobStatus.REQUIRES_ACTION), expires_at__lt=now
    ).select_related("agent", "thread"):
        if job_finish(job=job, status=JobStatus.EXPIRED):
            counts["expired"] += 1
    # Only threads where the oldest queued job could start now: the others are woken when their job ends.
    # Claims are conditional, so a message sent twice runs its job once.
    lost_before = now if _broker_restarted() else now - timedelta(seconds=settings.JOBS_RESEND_QUEUED_AFTER_SECONDS)
    busy_threads = Job.objects.filter(status__in=(JobStatus.RUNNING, JobStatus.REQUIRES_ACTION)).values("thread_id")
    for thread_id in (
        Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=lost_before)
        .exclude(thread_id__in=busy_threads)
        .order_by()  # without the default ordering, or DISTINCT would be per (thread, created_at)
        .values_list("thread_id", flat=True)
        .distinct()
    ):
        job_start_next(thread_id=thread_id)
        counts["resent"] += 1
    counts["purged"] = job_results_purge(now=now) + stateless_turns_purge(now=now)
    return counts


def stateless_turns_purge(*, now: datetime) -> int:
    """Purge stateless turns (jobs.turns) that ended JOBS_STATELESS_RETENTION_SECONDS ago: their ephemeral
    thread's messages, events and title, the job's input and output, and its artifacts; returns how many.

    The job row stays, with its usage and cost, for accounting (and ``results_purged_at`` says when); the files
    uploaded or fetched with the request stay the caller's files, like any other upload.
    """
    due = Job.objects.filter(
        thread__ephemeral=True,
        status__in=FINAL_STATUSES,
        finished_at__lt=now - timedelta(seconds=settings.JOBS_STATELESS_RETENTION_SECONDS),
        results_purged_at__isnull=True,
    )
    purged = 0
    while batch := list(due.order_by("finished_at").values_list("pk", "thread_id")[:500]):
        job_ids, thread_ids = [pk for pk, _ in batch], [thread_id for _, thread_id in batch]
        with transaction.atomic():
            thread_services.ephemeral_threads_empty(thread_ids=thread_ids)
            Artifact.objects.filter(job_id__in=job_ids).delete()
            purged += due.filter(pk__in=job_ids).update(
                input={"supplied_history": True}, output={}, resume_state=None, results_purged_at=now
            )
    return purged


def job_results_purge(*, now: datetime) -> int:
    """Purge the results of ended jobs whose expiry is JOBS_RESULT_RETENTION_SECONDS past (0: never): their
    output and resume state are emptied and their artifacts deleted (the files leave storage once that commits,
    through django-cleanup), and ``results_purged_at`` says when. Returns how many jobs were purged.

    What a job used (usage, cost) stays for accounting, and its error for diagnosis; the reply stays on the
    thread, which is the conversation rather than the job's result (deleting the thread removes it).
    """
    retention = settings.JOBS_RESULT_RETENTION_SECONDS
    if retention <= 0:
        return 0
    due = Job.objects.filter(
        status__in=FINAL_STATUSES, expires_at__lt=now - timedelta(seconds=retention), results_purged_at__isnull=True
    ).exclude(thread__ephemeral=True)  # stateless turns are purged whole, by stateless_turns_purge
    purged = 0
    # In batches, so a first run over a long history neither holds one huge transaction nor loads every id.
    while job_ids := list(due.order_by("expires_at").values_list("pk", flat=True)[:500]):
        purged += _results_purge(due.filter(pk__in=job_ids), now=now)
    return purged


@transaction.atomic
def _results_purge(jobs: QuerySet[Job], *, now: datetime) -> int:
    # django-cleanup removes the files on post_delete, which this delete sends for every row.
    Artifact.objects.filter(job__in=jobs.values("pk")).delete()
    return jobs.update(output={}, resume_state=None, results_purged_at=now)


@transaction.atomic
def job_results_delete(*, job: Job) -> None:
    """Purge one job's results now, as the janitor does past their retention (see :func:`job_results_purge`),
    cancelling the job first (``immediate``) while it is still active: what the Responses API's delete means.

    Usage and cost stay for accounting; the thread keeps the messages, which are the conversation's.
    """
    if not job.is_final:
        with contextlib.suppress(Conflict):  # it ended meanwhile: nothing left to stop
            job_cancel(job=job, mode=CancelMode.IMMEDIATE)
    _results_purge(Job.objects.filter(pk=job.pk), now=timezone.now())


# --- Artifacts ------------------------------------------------------------------------------------------------

ARTIFACT_NAME_MAX_LENGTH = 200
# type/subtype with optional parameters: the value is served as a Content-Type header, so nothing else passes.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;\s*[\w!#$&^.+-]+=[\w!#$&^.+-]+)*")


def artifact_content_url(artifact: Artifact) -> str | None:
    """Where the artifact's file downloads; None when it has none."""
    if not artifact.file:
        return None
    return reverse(
        "job-artifact-content",
        kwargs={"tenant": artifact.tenant.slug, "pk": artifact.job_id, "artifact_id": artifact.pk},
    )


def artifact_summary(artifact: Artifact) -> dict[str, Any]:
    """What ``artifact.updated`` carries (and a tool that published it returns)."""
    return {
        "id": str(artifact.pk),
        "name": artifact.name,
        "kind": artifact.kind,
        "data": artifact.data,
        "media_type": artifact.media_type,
        "size": artifact.size,
        "url": artifact_content_url(artifact),
    }


def _artifact_checked(
    *, name: str, kind: str, data: Any, content: bytes | None, media_type: str
) -> tuple[str, str, str]:
    """The artifact's (name, kind, media type) once valid; a ValidationError naming each field that is not."""
    errors: dict[str, str] = {}
    limit = settings.JOBS_ARTIFACT_MAX_BYTES
    name = (name or "").strip()
    if not name or len(name) > ARTIFACT_NAME_MAX_LENGTH:
        errors["name"] = f"An artifact needs a name of 1 to {ARTIFACT_NAME_MAX_LENGTH} characters."
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        errors["name"] = "An artifact's name may not contain control characters."
    if kind not in ArtifactKind.values:
        errors["kind"] = f"Unknown kind {str(kind)[:50]!r}; expected one of {', '.join(ArtifactKind.values)}."
    try:
        encoded = json.dumps(data)
    except (TypeError, ValueError):
        errors["data"] = "The data must be JSON."
    else:
        if not isinstance(data, dict):
            errors["data"] = "The data must be a JSON object."
        elif len(encoded.encode()) > limit:
            errors["data"] = f"The data is larger than the limit of {limit} bytes."
    if content is not None and len(content) > limit:
        errors["content"] = f"The file is {len(content)} bytes; at most {limit} are allowed."
    media_type = media_type.strip() or ("application/octet-stream" if content is not None else "")
    if media_type and (len(media_type) > 200 or not _MEDIA_TYPE.fullmatch(media_type)):
        errors["media_type"] = "Not a media type (e.g. text/plain; charset=utf-8)."
    if errors:
        raise ValidationError(errors)
    return name, kind, media_type


def artifact_publish(
    *,
    job: Job,
    name: str,
    kind: str = ArtifactKind.OTHER,
    data: dict[str, Any] | None = None,
    content: bytes | None = None,
    media_type: str = "",
    claimed: bool = False,
) -> Artifact | None:
    """Create the job's artifact called ``name``, or replace the one of that name; appends ``artifact.updated``.

    ``content`` is the artifact's file (stored under artifacts/<job id>/); None means it has none, and an update
    without content drops the earlier file. A ValidationError (too large, unknown kind, bad media type) writes
    nothing. ``claimed``: as for job_finish, the runner of the job's attempt publishes only while its claim
    holds, else None and nothing written.
    """
    name, kind, media_type = _artifact_checked(
        name=name, kind=kind, data=data or {}, content=content, media_type=media_type
    )
    new_file = ""
    try:
        with transaction.atomic():
            # The thread's lock (as for every event of the job) also serialises two publishes of one name.
            _lock_thread(job.thread_id)
            if claimed and not _owned(job).exists():
                return None
            artifact = Artifact.objects.select_for_update().filter(job=job, name=name).first()
            if artifact is None:
                artifact = Artifact(job=job, tenant=job.tenant, name=name)
            artifact.kind, artifact.data, artifact.media_type = kind, data or {}, media_type
            if content is not None:
                artifact.file.save("content", ContentFile(content), save=False)
                new_file = artifact.file.name
            else:
                artifact.file = None
            artifact.size = len(content) if content is not None else 0
            artifact.save()
            thread_services.events_append(
                thread=job.thread,
                events=[
                    NewEvent(
                        EventType.ARTIFACT_UPDATED, artifact_summary(artifact), job_id=job.id, agent_id=job.agent_id
                    )
                ],
            )
    except BaseException:
        # Files are not transactional: one saved for a write that did not happen is removed again.
        if new_file:
            Artifact._meta.get_field("file").storage.delete(new_file)
        raise
    return artifact
