"""Reads of jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer
from django.db.models import QuerySet
from django.http import Http404

from aihub.db import db_call
from jobs.models import FINAL_STATUSES, Artifact, Job, JobStatus, WebhookDelivery
from threads.events import JOB_FINAL_EVENTS, EventType, serve_events_from, thread_group
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

    Woken by the channel layer: the waiter joins the thread's group, then reads the job's status once (so an
    end committed before it joined is not missed), then sleeps on the group's messages. It holds no thread and
    no database connection meanwhile. The database stays the truth: every ``JOB_WAIT_RECHECK_SECONDS`` it reads
    the status again, in case the layer dropped the job's final event, and when the layer itself fails (Redis
    gone) it says so once and waits on those re-checks alone. The caller reads the job afresh afterwards.
    """
    job_ref = str(job.pk)
    deadline = time.monotonic() + max(0.0, min(timeout, JOB_WAIT_MAX_SECONDS))
    serve_events_from(asyncio.get_running_loop())
    layer = get_channel_layer()
    channel, group = None, thread_group(job.thread_id)
    try:
        if layer is not None:
            try:
                channel = await layer.new_channel()
                await layer.group_add(group, channel)
            except Exception:  # the layer is down: the re-checks alone will do
                logger.warning("job %s: the channel layer is unavailable; waiting on database re-checks", job.pk)
                channel = None
        while True:
            if await db_call(_job_status, job.pk) in WAIT_ENDS:
                return True
            recheck_at = min(deadline, time.monotonic() + JOB_WAIT_RECHECK_SECONDS)
            while (remaining := recheck_at - time.monotonic()) > 0:
                if channel is None:
                    await asyncio.sleep(remaining)
                    break
                try:
                    message = await asyncio.wait_for(layer.receive(channel), timeout=remaining)
                except TimeoutError:
                    break
                except Exception:
                    logger.warning("job %s: lost the channel layer; waiting on database re-checks", job.pk)
                    channel = None
                    continue
                events = message.get("events", ()) if message.get("type") == "thread.events" else ()
                if any(e.get("job") == job_ref and e.get("type") in _WAIT_ENDING_EVENTS for e in events):
                    return True
            if time.monotonic() >= deadline:
                return await db_call(_job_status, job.pk) in WAIT_ENDS
    finally:
        if channel is not None:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)


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
        raise Http404("No such job.")
    return job


def artifact_list(*, job: Job) -> QuerySet[Artifact]:
    """What the job published, oldest first (callers have already checked they may see the job)."""
    return Artifact.objects.filter(job=job).select_related("tenant").order_by("created_at", "name")


def artifact_get(*, job: Job, artifact_id: uuid.UUID | str) -> Artifact:
    artifact = artifact_list(job=job).filter(pk=artifact_id).first()
    if artifact is None:
        raise Http404("No such artifact.")
    return artifact


def webhook_delivery_list(*, job: Job) -> QuerySet[WebhookDelivery]:
    """The attempts to deliver the job's webhook, oldest first."""
    return WebhookDelivery.objects.filter(job=job).order_by("created_at", "attempt")
