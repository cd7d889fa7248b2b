"""Reads of jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from aihub.api.problems import not_found
from aihub.db import db_call
from jobs.models import FINAL_STATUSES, Artifact, Job, JobStatus, WebhookDelivery
from threads.events import JOB_FINAL_EVENTS, EventType, thread_group
from threads.fanout import event_hub
from threads.selectors import thread_list

if TYPE_CHECKING:
    from aihub.access.principal import Principal

JOB_WAIT_MAX_SECONDS = 60.0
"""The longest a request may wait for a job (``?wait=true&timeout=N``); longer waits should stream instead."""

JOB_WAIT_RECHECK_SECONDS = 2.0
"""How often a waiter reads the job's row anyway: a final event the channel layer lost costs at most this."""

WAIT_ENDS = frozenset({*FINAL_STATUSES, JobStatus.REQUIRES_ACTION})
_WAIT_ENDING_EVENTS = frozenset({*JOB_FINAL_EVENTS, EventType.JOB_REQUIRES_ACTION})

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
    """Jobs of the tenant on threads the caller can see, newest first; with aihub.admin.jobs, every job.

    Without aihub.user.jobs the caller sees none, whichever threads it can see.
    """
    jobs = Job.objects.filter(tenant=principal.tenant).select_related("agent", "thread").order_by("-created_at")
    if principal.can("admin", "jobs"):
        return jobs
    if not principal.can("user", "jobs"):
        return jobs.none()
    return jobs.filter(thread__in=thread_list(principal=principal).values("pk"))


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
