"""Reads of jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from agents.models import Agent
from aihub.access.rules import Level
from aihub.api.problems import not_found
from aihub.api.query import in_time_range
from aihub.db import db_call
from jobs.models import ACTIVE_STATUSES, FINAL_STATUSES, Artifact, Job, JobStatus, PassthroughCall, WebhookDelivery
from threads.content import text_of
from threads.events import JOB_FINAL_EVENTS, EventType, thread_group
from threads.fanout import event_hub
from threads.models import Event, Thread
from threads.selectors import checkpoint_list, thread_list

if TYPE_CHECKING:
    from aihub.access.principal import Principal

JOB_WAIT_MAX_SECONDS = 60.0
"""The longest a request may wait for a job (``?wait=true&timeout=N``); longer waits should stream instead."""

JOB_WAIT_RECHECK_SECONDS = 2.0
"""How often a waiter reads the job's row anyway: a final event the channel layer lost costs at most this."""

WAIT_ENDS = frozenset({*FINAL_STATUSES, JobStatus.REQUIRES_ACTION})
_WAIT_ENDING_EVENTS = frozenset({*JOB_FINAL_EVENTS, EventType.JOB_REQUIRES_ACTION})

USAGE_RESOURCE = "usage"
"""``aihub.admin.usage`` sees the tenant's usage; everyone else their own."""

logger = logging.getLogger(__name__)


def _job_status(job_id: uuid.UUID) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


async def job_wait(*, job: Job, timeout: float) -> bool:
    """Wait until the job has ended or asks for action, or ``timeout`` seconds have passed; True if it did.

    Woken by the channel layer: the waiter listens to the thread's group (threads.fanout), then reads the job's
    status once (so an end committed before it listened is not missed), then sleeps until the group brings the
    job's ending event. It holds no thread and no database connection meanwhile. The database stays the truth:
    every ``JOB_WAIT_RECHECK_SECONDS``, and whenever the hub says something may have been missed (the layer
    failed, and the hub logged it), it reads the status again. The caller reads the job afresh afterwards.
    """
    job_ref = str(job.pk)
    deadline = time.monotonic() + max(0.0, min(timeout, JOB_WAIT_MAX_SECONDS))
    woken, ended = asyncio.Event(), asyncio.Event()

    def on_events(events: list[dict[str, Any]]) -> None:
        if any(e.get("job") == job_ref and e.get("type") in _WAIT_ENDING_EVENTS for e in events):
            ended.set()  # published after its commit: no need to read the row to believe it
            woken.set()
        elif not events:
            woken.set()  # the hub may have missed something: read the row

    hub, group = event_hub(), thread_group(job.thread_id)
    await hub.listen(group, on_events)
    try:
        while True:
            woken.clear()
            if await db_call(_job_status, job.pk) in WAIT_ENDS:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=min(remaining, JOB_WAIT_RECHECK_SECONDS))
            if ended.is_set():
                return True
    finally:
        await hub.unlisten(group, on_events)


def job_list(*, principal: Principal) -> QuerySet[Job]:
    """Jobs of the tenant on threads the caller can see (and its own stateless turns), newest first; with
    aihub.admin.jobs, every job.

    Without aihub.user.jobs the caller sees none, whichever threads it can see.
    """
    jobs = Job.objects.filter(tenant=principal.tenant).select_related("agent", "thread").order_by("-created_at")
    if principal.can("admin", "jobs"):
        return jobs
    if not principal.can("user", "jobs"):
        return jobs.none()
    # A stateless turn's job is its creator's: its ephemeral thread is on no one's list (jobs.turns).
    return jobs.filter(
        Q(thread__in=thread_list(principal=principal).values("pk"))
        | Q(thread__ephemeral=True, created_by=principal.user)
    )


def job_get(*, principal: Principal, job_id: uuid.UUID | str) -> Job:
    """The job, or Http404 when it does not exist or the caller may not see it."""
    job = job_list(principal=principal).filter(pk=job_id).first()
    if job is None:
        raise not_found("job", job_id)
    return job


def artifact_list(*, job: Job) -> QuerySet[Artifact]:
    """What the job published, oldest first (callers have already checked they may see the job)."""
    return Artifact.objects.filter(job=job).select_related("tenant").order_by("created_at", "name")


def artifact_get(*, job: Job, artifact_id: uuid.UUID | str) -> Artifact:
    artifact = artifact_list(job=job).filter(pk=artifact_id).first()
    if artifact is None:
        raise not_found("artifact", artifact_id)
    return artifact


def webhook_delivery_list(*, job: Job) -> QuerySet[WebhookDelivery]:
    """The attempts to deliver the job's webhook, oldest first."""
    return WebhookDelivery.objects.filter(job=job).order_by("created_at", "attempt")


# --- A job's UI state and final report (AI-Q's jobs/{id}/state and jobs/{id}/report) ------------------------

STEP_EVENTS = frozenset(
    {
        EventType.JOB_QUEUED,
        EventType.JOB_STARTED,
        EventType.JOB_REQUIRES_ACTION,
        *JOB_FINAL_EVENTS,
        EventType.LLM_STARTED,
        EventType.LLM_COMPLETED,
        EventType.THOUGHT,
        EventType.TOOL_STARTED,
        EventType.TOOL_COMPLETED,
        EventType.RETRIEVAL_COMPLETED,
        EventType.HANDOFF,
        EventType.MEMORY_RETRIEVED,
        EventType.MEMORY_STORED,
    }
)
"""The event types that mark where a job is (its step). Chunks are left out: they come by the hundred and say
only that the model is still writing, which ``llm.started`` already said; so are the thread's own events
(message, state, thread, artifact updates), which are not phases of the run."""


def _job_events(job: Job) -> QuerySet[Event]:
    # Every read below is "the job's latest ... by sequence": the (job_id, sequence) index answers each one.
    return Event.objects.filter(job_id=job.pk)


def job_state(*, job: Job) -> dict[str, Any]:
    """Where the job stands now, for a UI that polls instead of streaming: its status, its step (the type of its
    latest step event), its progress (the ``progress`` of its latest event that has one; None), its last event's
    sequence (to stream on from, ``Last-Event-ID``) and its output so far.

    The output is the final text once the job has one; before that, the text of the ``llm.chunk`` deltas since
    its latest ``llm.started`` (the reply being written, not the drafts of earlier model calls).
    """
    events = _job_events(job).order_by("-sequence")
    last_event_id = events.values_list("sequence", flat=True).first()
    step = events.filter(type__in=STEP_EVENTS).values_list("type", flat=True).first()
    progress_data = events.filter(data__has_key="progress").values_list("data", flat=True).first()
    output_content = (job.output or {}).get("content")
    if output_content:
        partial_output = text_of(output_content)
    else:
        latest_start = _job_events(job).filter(type=EventType.LLM_STARTED).order_by("-sequence").values("sequence")[:1]
        deltas = (
            _job_events(job)
            .filter(type=EventType.LLM_CHUNK, sequence__gt=Coalesce(Subquery(latest_start), 0))
            .order_by("sequence")
            .values_list("data", flat=True)
        )
        partial_output = "".join(str(data.get("delta", "")) for data in deltas if isinstance(data, dict))
    return {
        "id": job.pk,
        "thread": job.thread_id,
        "status": job.status,
        "step": step,
        "progress": progress_data.get("progress") if isinstance(progress_data, dict) else None,
        "last_event_id": last_event_id,
        "partial_output": partial_output,
        "pending_action": job.pending_action,
    }


def job_report(*, job: Job) -> dict[str, Any]:
    """The final report of an ended job: its output (content blocks and their text), the citations among those
    blocks, what it published (artifacts, a queryset), its usage and cost, its error and its timings.

    Citations are the ``citation`` blocks of the reply (the rag and tool agents answer with them); citations an
    agent published as an artifact are in ``artifacts``, kind ``citation``.
    """
    content = list((job.output or {}).get("content") or [])
    usage = dict(job.usage or {})
    return {
        "id": job.pk,
        "thread": job.thread_id,
        "status": job.status,
        "output": content,
        "output_text": text_of(content),
        "output_message": (job.output or {}).get("message"),
        "citations": [block for block in content if block.get("type") == "citation"],
        "artifacts": artifact_list(job=job),
        "usage": usage,
        "cost": usage.get("cost"),
        "currency": usage.get("currency"),
        "error": job.error,
        "results_purged_at": job.results_purged_at,
        "timings": {
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "queued_seconds": _seconds_between(job.created_at, job.started_at),
            "run_seconds": _seconds_between(job.started_at, job.finished_at),
        },
    }


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start is not None and end is not None else None


# --- A thread's runtime view (SwarmForge's session runtime) --------------------------------------------------


def thread_runtime(*, thread: Thread) -> dict[str, Any]:
    """What is going on in a thread now: its active agent, its active job with that job's step, the requests
    waiting for a person, the handoff chain, and the version of its state (the id of its latest
    ``state.updated`` event, 0 before any), with the state itself and the latest checkpoint.

    The active agent answers the next message when none is named: the latest handoff's target, else the active
    job's agent, else the agent of the latest checkpoint. Six statements, however long the thread.
    """
    events = Event.objects.filter(thread=thread)
    active = list(
        Job.objects.filter(thread=thread, status__in=ACTIVE_STATUSES).select_related("agent").order_by("created_at")
    )
    # The job that holds the thread: running or waiting for a person; else the next one queued.
    holding = [job for job in active if job.status in (JobStatus.RUNNING, JobStatus.REQUIRES_ACTION)]
    job: Job | None = (holding or active)[0] if active else None
    step = None
    if job is not None:
        steps = _job_events(job).filter(type__in=STEP_EVENTS).order_by("-sequence")
        step = steps.values_list("type", flat=True).first()
    handoffs = list(
        events.filter(type=EventType.HANDOFF).order_by("sequence").values_list("sequence", "data", "created_at")
    )
    chain = [
        {"event": sequence, "from": data.get("from"), "to": data.get("to"), "reason": data.get("reason", ""), "at": at}
        for sequence, data, at in handoffs
    ]
    state_version = (
        events.filter(type=EventType.STATE_UPDATED).order_by("-sequence").values_list("sequence", flat=True).first()
    )
    checkpoint = checkpoint_list(thread=thread).first()
    agent_id: Any = None
    if handoffs:
        with contextlib.suppress(ValueError):
            agent_id = uuid.UUID(str(handoffs[-1][1].get("to_agent")))
    if agent_id is None and job is not None:
        agent_id = job.agent_id
    if agent_id is None and checkpoint is not None:
        agent_id = checkpoint.agent_id
    agent = Agent.objects.filter(tenant_id=thread.tenant_id, pk=agent_id).first() if agent_id else None
    return {
        "thread": thread.pk,
        "active_agent": agent,
        "active_job": None if job is None else {"job": job, "step": step},
        "queued_jobs": sum(1 for j in active if j.status == JobStatus.QUEUED),
        "pending_actions": [
            {"job": j.pk, "agent": j.agent.slug, "request": j.pending_action}
            for j in active
            if j.status == JobStatus.REQUIRES_ACTION and j.pending_action
        ],
        "handoffs": chain,
        "state": thread.state,
        "state_version": state_version or 0,
        "last_event_id": thread.last_sequence,
        "latest_checkpoint": checkpoint,
    }


# --- Usage ---------------------------------------------------------------------------------------------------


def usage_scope(*, principal: Principal, asked: str | None = None) -> str:
    """``tenant`` (everyone's usage) or ``mine``: what was asked, by default the widest the caller may see;
    PermissionDenied for ``tenant`` without ``aihub.admin.usage``."""
    tenant_wide = principal.can(Level.ADMIN, USAGE_RESOURCE)
    scope = asked or ("tenant" if tenant_wide else "mine")
    if scope == "tenant" and not tenant_wide:
        raise PermissionDenied("Seeing the tenant's usage takes aihub.admin.usage; you see your own.")
    return scope


def usage_sources(*, principal: Principal, scope: str) -> tuple[QuerySet[Job], QuerySet[PassthroughCall]]:
    """The jobs and passthrough calls whose usage ``scope`` covers: the tenant's, or the caller's own."""
    jobs = Job.objects.filter(tenant=principal.tenant)
    calls = PassthroughCall.objects.filter(tenant=principal.tenant)
    if scope == "mine":
        jobs = jobs.filter(created_by=principal.user)
        calls = calls.filter(created_by=principal.user)
    return jobs, calls


USAGE_RECORD_FIELDS = (
    "id",
    "thread",
    "agent",
    "agent__slug",
    "agent_version",
    "created_by",
    "created_by__username",
    "status",
    "model",
    "input_tokens",
    "output_tokens",
    "cost",
    "created_at",
    "finished_at",
)
"""What a usage record shows: the job's big JSON columns (input, output, resume state) stay in the database."""


def usage_record_list(
    *,
    principal: Principal,
    scope: str,
    agent: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Job]:
    """The usage records of ended jobs (one per job, priced as it ended), newest end first.

    A job's usage is final once it ends, so the record is ordered, filtered and paged by ``finished_at``, the
    moment it came to be: a cursor walk sees each job once, with its final usage, however many end meanwhile.
    """
    jobs, _ = usage_sources(principal=principal, scope=scope)
    records = (
        jobs.filter(finished_at__isnull=False)
        .select_related("agent", "created_by")
        .only(*USAGE_RECORD_FIELDS)
        .order_by("-finished_at", "id")
    )
    if agent:
        records = records.filter(agent__slug=agent)
    if model:
        records = records.filter(model=model)
    return in_time_range(records, "finished_at", since=since, until=until)


def usage_call_list(
    *,
    principal: Principal,
    scope: str,
    kind: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[PassthroughCall]:
    """The usage records of passthrough calls (images, audio), newest first: each is accounted as it is stored."""
    _, calls = usage_sources(principal=principal, scope=scope)
    calls = calls.select_related("created_by").order_by("-created_at", "-id")
    if kind:
        calls = calls.filter(kind=kind)
    if model:
        calls = calls.filter(model=model)
    return in_time_range(calls, "created_at", since=since, until=until)
