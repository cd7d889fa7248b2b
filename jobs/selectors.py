"""Reads of jobs."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.http import Http404

from jobs.models import FINAL_STATUSES, Artifact, Job, WebhookDelivery
from threads.selectors import thread_list

if TYPE_CHECKING:
    from aihub.access.principal import Principal

JOB_WAIT_MAX_SECONDS = 60.0
"""The longest a request may wait for a job (``?wait=true&timeout=N``); longer waits should stream instead."""

_POLL_FIRST_SECONDS = 0.05
_POLL_MAX_SECONDS = 0.5


def job_wait(*, job_id: uuid.UUID | str, timeout: float) -> Job:
    """The job once it is final, or as it stands when ``timeout`` seconds have passed.

    Polls the database, which is the truth (the channel layer may drop messages); the interval starts short,
    since echo-like jobs finish in milliseconds, and backs off so a long wait costs few queries.
    """
    deadline = time.monotonic() + max(0.0, min(timeout, JOB_WAIT_MAX_SECONDS))
    interval = _POLL_FIRST_SECONDS
    while True:
        job = Job.objects.select_related("agent").get(pk=job_id)
        remaining = deadline - time.monotonic()
        if job.status in FINAL_STATUSES or remaining <= 0:
            return job
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, _POLL_MAX_SECONDS)


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
