"""Every write to jobs: submitting, claiming, heartbeats, finishing, cancelling, and the janitor's repairs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from agents.models import Agent
from aihub.api.problems import Conflict, problem
from jobs.models import ACTIVE_STATUSES, FINAL_STATUSES, CancelMode, Job, JobStatus
from threads import services as thread_services
from threads.content import text_of, validate_content
from threads.events import EventType, NewEvent
from threads.models import Message, MessageRole, Thread

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


class _AlreadySubmitted(Exception):
    """Raised inside the submission's transaction to undo it when the idempotency key turns out to be taken."""

    def __init__(self, job: Job) -> None:
        self.job = job


def _earlier_submission(*, agent: Agent, user: User, idempotency_key: str | None) -> Job | None:
    if not idempotency_key:
        return None
    return (
        Job.objects.select_related("agent", "thread")
        .filter(tenant=agent.tenant, created_by=user, idempotency_key=idempotency_key)
        .first()
    )


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
    earlier = _earlier_submission(agent=agent, user=user, idempotency_key=idempotency_key)
    if earlier is not None:
        return earlier, False
    if thread is not None and thread.tenant_id != agent.tenant_id:
        raise ValidationError({"thread": "The thread belongs to another tenant than the agent."})
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
        )
    except _AlreadySubmitted as taken:
        return taken.job, False
    except IntegrityError:
        # The same key won a race on another connection a moment ago; our transaction (savepoint) is undone,
        # so reading its job is safe here, outside it.
        earlier = _earlier_submission(agent=agent, user=user, idempotency_key=idempotency_key)
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
) -> Job:
    if not agent.enabled:
        raise Conflict(f"Agent {agent.slug!r} is disabled.")
    blocks = validate_content(content)
    if thread is None:
        thread = thread_services.thread_create(
            tenant=agent.tenant, created_by=user, title=text_of(blocks)[:80], agent_ids=[agent.id]
        )
    locked = Thread.objects.select_for_update().get(pk=thread.pk)
    # Again under the lock: a retry of the same request to the same thread waited here for the first one, which
    # has committed by now; it gets that job instead of a 409 from the busy check below.
    earlier = _earlier_submission(agent=agent, user=user, idempotency_key=idempotency_key)
    if earlier is not None:
        raise _AlreadySubmitted(earlier)
    thread_services.thread_member_add(thread=locked, agent_id=agent.id)
    active = list(Job.objects.filter(thread=locked, status__in=ACTIVE_STATUSES).select_related("agent", "thread"))
    if active and busy == "reject":
        raise Conflict(f"The thread has an active job ({active[0].id}); send busy='enqueue' or 'interrupt'.")
    if busy == "interrupt":
        for other in active:
            job_cancel(job=other, mode=CancelMode.IMMEDIATE)

    message = thread_services.message_create(thread=locked, role=MessageRole.USER, content=blocks, author=user)
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
            "context": context,
        },
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        max_attempts=settings.JOBS_MAX_ATTEMPTS,
    )
    thread_services.events_append(thread=locked, events=[_job_event(job, EventType.JOB_QUEUED)])
    transaction.on_commit(partial(_enqueue, job.id))
    return job


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
        .exists()
    )
    if ahead:
        return None
    claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        worker=worker[:200],
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        cancel_requested="",
    )
    if not claimed:
        return None
    job.refresh_from_db()
    thread_services.events_append(thread=job.thread, events=[_job_event(job, EventType.JOB_STARTED)])
    return job


def _lock_thread(thread_id: uuid.UUID) -> None:
    """Take the thread's row lock. Every change of a job's status holds it, and takes it before the job's row:
    one lock order everywhere (thread, then job), so a cancel, an interrupt and a finishing runner queue up
    instead of deadlocking; and under it a job's status is stable."""
    Thread.objects.select_for_update().filter(pk=thread_id).first()


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
    row = _owned(job).values_list("cancel_requested", flat=True).first()
    return None if row is None else str(row)


@transaction.atomic
def job_events_append(*, job: Job, events: list[NewEvent]) -> bool:
    """Append a running job's events while its claim holds; False (and nothing written) once it is lost."""
    _lock_thread(job.thread_id)
    if not _owned(job).exists():
        return False
    thread_services.events_append(thread=job.thread, events=events)
    return True


@transaction.atomic
def job_reply(*, job: Job, content: list[dict[str, Any]]) -> Message | None:
    """Store a complete assistant message of a running job while its claim holds; None once it is lost."""
    _lock_thread(job.thread_id)
    if not _owned(job).exists():
        return None
    return thread_services.message_create(
        thread=job.thread, role=MessageRole.ASSISTANT, content=content, agent_id=job.agent_id, job_id=job.id
    )


@transaction.atomic
def job_finish(
    *,
    job: Job,
    status: JobStatus,
    output: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    claimed: bool = False,
) -> bool:
    """Put a job in a final state and append its final event; False when it was already final.

    ``claimed``: the caller is the runner of the job's current attempt; it only finishes the job while that
    claim holds (see ``_owned``).
    """
    now = timezone.now()
    changes: dict[str, Any] = {"status": status, "finished_at": now}
    if output is not None:
        changes["output"] = output
    if usage is not None:
        changes["usage"] = usage
    if error is not None:
        changes["error"] = error
    _lock_thread(job.thread_id)
    rows = _owned(job) if claimed else Job.objects.filter(pk=job.pk).exclude(status__in=FINAL_STATUSES)
    if not rows.update(**changes):
        return False
    job.refresh_from_db()
    data: dict[str, Any] = {"usage": job.usage}
    if job.output:
        data["output"] = job.output
    if job.error:
        data["error"] = job.error
    thread_services.events_append(thread=job.thread, events=[_job_event(job, _FINAL_EVENT[status], **data)])
    transaction.on_commit(partial(job_start_next, thread_id=job.thread_id))
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


def janitor_run(*, now: datetime | None = None) -> dict[str, int]:
    """Repair what workers left behind: retry or fail jobs whose heartbeat went stale, expire overdue jobs,
    and re-send queued jobs whose task message was lost. Safe to run anywhere, any number of times."""
    now = now or timezone.now()
    counts = {"retried": 0, "failed": 0, "cancelled": 0, "expired": 0, "resent": 0}
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
    lost_before = now - timedelta(seconds=settings.JOBS_RESEND_QUEUED_AFTER_SECONDS)
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
    return counts
