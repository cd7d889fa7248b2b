"""Every write to jobs: submitting, claiming, heartbeats, finishing, cancelling, and the janitor's repairs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent
from aihub.api.problems import Conflict, problem
from jobs.models import ACTIVE_STATUSES, FINAL_STATUSES, CancelMode, Job, JobStatus
from threads import services as thread_services
from threads.content import text_of, validate_content
from threads.events import EventType, NewEvent
from threads.models import MessageRole, Thread

if TYPE_CHECKING:
    from django.contrib.auth.models import User

BusyPolicy = Literal["reject", "enqueue", "interrupt"]

_FINAL_EVENT = {
    JobStatus.SUCCEEDED: EventType.JOB_SUCCEEDED,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.CANCELLED: EventType.JOB_CANCELLED,
    JobStatus.EXPIRED: EventType.JOB_EXPIRED,
}


def _enqueue(job_id: uuid.UUID) -> None:
    from jobs.tasks import run_job

    run_job.delay(str(job_id))


def job_summary(job: Job) -> dict[str, Any]:
    """What job events carry: enough for a client to follow the job without another request."""
    return {
        "id": str(job.id),
        "status": job.status,
        "agent": job.agent.slug if job.agent_id else None,
        "agent_version": job.agent_version,
        "attempts": job.attempts,
    }


def _job_event(job: Job, event_type: EventType, **data: Any) -> NewEvent:
    return NewEvent(event_type, {**job_summary(job), **data}, job_id=job.id, agent_id=job.agent_id)


@transaction.atomic
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
) -> tuple[Job, bool]:
    """Store the user's message and a queued job for it; returns (job, created).

    With an idempotency key already used by this user in this tenant, the earlier job is returned and nothing
    is written. The busy-thread decision is made under the thread's row lock, so two concurrent messages with
    ``reject`` give exactly one job.
    """
    if idempotency_key:
        earlier = Job.objects.filter(tenant=agent.tenant, created_by=user, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier, False
    if not agent.enabled:
        raise Conflict(f"Agent {agent.slug!r} is disabled.")
    blocks = validate_content(content)
    if thread is None:
        thread = thread_services.thread_create(
            tenant=agent.tenant, created_by=user, title=text_of(blocks)[:80], agent_ids=[agent.id]
        )
    else:
        thread_services.thread_member_add(thread=thread, agent_id=agent.id)
    locked = Thread.objects.select_for_update().get(pk=thread.pk)
    active = list(Job.objects.filter(thread=locked, status__in=ACTIVE_STATUSES).select_related("agent"))
    if active and busy == "reject":
        raise Conflict(f"The thread has an active job ({active[0].id}); send busy='enqueue' or 'interrupt'.")
    if busy == "interrupt":
        for other in active:
            job_cancel(job=other, mode=CancelMode.IMMEDIATE)

    message = thread_services.message_create(thread=locked, role=MessageRole.USER, content=blocks, author=user)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                tenant=agent.tenant,
                thread=locked,
                agent=agent,
                agent_version=agent.version,
                created_by=user,
                input={
                    "message": str(message.id),
                    "content": blocks,
                    "additional_instructions": additional_instructions,
                    "context": context or {},
                },
                idempotency_key=idempotency_key or None,
                expires_at=expires_at,
                max_attempts=settings.JOBS_MAX_ATTEMPTS,
            )
    except IntegrityError:
        # The same key won a race a moment ago: the whole submission is that job's, so undo ours.
        transaction.set_rollback(True)
        return Job.objects.get(tenant=agent.tenant, created_by=user, idempotency_key=idempotency_key), False
    thread_services.events_append(thread=locked, events=[_job_event(job, EventType.JOB_QUEUED)])
    transaction.on_commit(lambda: _enqueue(job.id))
    return job, True


@transaction.atomic
def job_claim(*, job_id: uuid.UUID, worker: str) -> Job | None:
    """Move a queued job to running for this worker, or return None (someone else has it, or it must wait).

    A job waits while an earlier job of its thread is queued, running or waiting for action: the thread's row
    lock makes that check and the conditional update one decision.
    """
    job = Job.objects.select_related("agent", "thread").filter(pk=job_id).first()
    if job is None or job.status != JobStatus.QUEUED:
        return None
    Thread.objects.select_for_update().filter(pk=job.thread_id).first()
    ahead = (
        Job.objects.filter(thread_id=job.thread_id, status__in=ACTIVE_STATUSES, created_at__lt=job.created_at)
        .exclude(pk=job.pk)
        .exists()
    )
    if ahead:
        return None
    now = timezone.now()
    claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, worker=worker, started_at=now, heartbeat_at=now, attempts=job.attempts + 1
    )
    if not claimed:
        return None
    job.refresh_from_db()
    thread_services.events_append(thread=job.thread, events=[_job_event(job, EventType.JOB_STARTED)])
    return job


def job_heartbeat(*, job: Job) -> str:
    """Record that the worker is alive; returns the cancellation requested so far ('' when none)."""
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
    return Job.objects.filter(pk=job.pk).values_list("cancel_requested", flat=True).first() or ""


@transaction.atomic
def job_finish(
    *,
    job: Job,
    status: JobStatus,
    output: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Put a job in a final state and append its final event; False when it was already final."""
    now = timezone.now()
    changes: dict[str, Any] = {"status": status, "finished_at": now}
    if output is not None:
        changes["output"] = output
    if usage is not None:
        changes["usage"] = usage
    if error is not None:
        changes["error"] = error
    if not Job.objects.filter(pk=job.pk).exclude(status__in=FINAL_STATUSES).update(**changes):
        return False
    job.refresh_from_db()
    data: dict[str, Any] = {"usage": job.usage}
    if job.output:
        data["output"] = job.output
    if job.error:
        data["error"] = job.error
    thread_services.events_append(thread=job.thread, events=[_job_event(job, _FINAL_EVENT[status], **data)])
    transaction.on_commit(lambda: job_start_next(thread_id=job.thread_id))
    return True


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
    locked = Job.objects.select_for_update().select_related("agent", "thread").get(pk=job.pk)
    if locked.is_final:
        raise Conflict(f"The job has already ended ({locked.status}).")
    if locked.status == JobStatus.RUNNING:
        Job.objects.filter(pk=locked.pk).update(cancel_requested=str(mode))
        locked.cancel_requested = str(mode)
    else:
        job_finish(job=locked, status=JobStatus.CANCELLED)
        locked.refresh_from_db()
    return locked


def job_fail_problem(*, job: Job, detail: str, status: int = 500, type_slug: str = "job-failed") -> dict[str, Any]:
    return problem(status=status, detail=detail, instance=f"/jobs/{job.id}", type_slug=type_slug, title="Job failed")


def janitor_run(*, now: datetime | None = None) -> dict[str, int]:
    """Repair what workers left behind: retry or fail jobs whose heartbeat went stale, expire overdue jobs,
    and re-send queued jobs whose task message was lost. Safe to run anywhere, any number of times."""
    now = now or timezone.now()
    counts = {"retried": 0, "failed": 0, "expired": 0, "resent": 0}
    stale_before = now - timedelta(seconds=settings.JOBS_STALE_AFTER_SECONDS)
    for job in Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before).select_related(
        "agent", "thread"
    ):
        with transaction.atomic():
            if job.attempts < job.max_attempts:
                # Conditional: a worker that comes back to life meanwhile keeps its job.
                if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, heartbeat_at__lt=stale_before).update(
                    status=JobStatus.QUEUED, worker="", cancel_requested=""
                ):
                    job.refresh_from_db()
                    thread_services.events_append(
                        thread=job.thread, events=[_job_event(job, EventType.JOB_QUEUED, retry=True)]
                    )
                    transaction.on_commit(partial(_enqueue, job.pk))
                    counts["retried"] += 1
            elif job_finish(
                job=job,
                status=JobStatus.FAILED,
                error=job_fail_problem(
                    job=job, detail="The worker running this job stopped responding.", type_slug="worker-lost"
                ),
            ):
                counts["failed"] += 1
    for job in Job.objects.filter(
        status__in=(JobStatus.QUEUED, JobStatus.REQUIRES_ACTION), expires_at__lt=now
    ).select_related("agent", "thread"):
        if job_finish(job=job, status=JobStatus.EXPIRED):
            counts["expired"] += 1
    lost_before = now - timedelta(seconds=settings.JOBS_RESEND_QUEUED_AFTER_SECONDS)
    for thread_id in (
        Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=lost_before)
        .values_list("thread_id", flat=True)
        .distinct()
    ):
        job_start_next(thread_id=thread_id)
        counts["resent"] += 1
    return counts
