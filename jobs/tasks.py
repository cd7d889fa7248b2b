"""Celery tasks of jobs: thin, idempotent, taking ids and loading fresh rows."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.conf import settings

from jobs import runner, schedules, services, webhooks


@shared_task(
    name="jobs.run_job",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.JOBS_SOFT_TIME_LIMIT_SECONDS,
    time_limit=settings.JOBS_TIME_LIMIT_SECONDS,
    bind=True,
)
def run_job(self: object, job_id: str) -> str:
    """Claim the job and run it; a job someone else claimed, or one that must wait its turn, is left alone."""
    hostname = getattr(getattr(self, "request", None), "hostname", None) or "worker"
    job = services.job_claim(job_id=uuid.UUID(job_id), worker=str(hostname))
    if job is None:
        return "not claimed"
    runner.execute(job)
    return "done"


@shared_task(name="jobs.janitor", acks_late=True, soft_time_limit=60, time_limit=90)
def janitor() -> dict[str, int]:
    return services.janitor_run()


@shared_task(name="jobs.deliver_webhook", acks_late=True, soft_time_limit=120, time_limit=150)
def deliver_webhook(job_id: str, attempt: int = 1) -> str:
    """Make one attempt to deliver a job's webhook (recorded); schedule the next one when it is due."""
    delivery = webhooks.webhook_deliver(job_id=uuid.UUID(job_id), attempt=attempt)
    if delivery is None:
        return "nothing to do"
    if delivery.next_attempt_at is not None:
        webhooks.webhook_enqueue(job_id=delivery.job_id, attempt=attempt + 1, countdown=webhooks.retry_delay(attempt))
        return "retry scheduled"
    return "delivered" if delivery.succeeded else "given up"


@shared_task(name="jobs.fire_schedules", acks_late=True, soft_time_limit=120, time_limit=150)
def fire_schedules() -> int:
    """Fire the schedules whose tick has come (beat runs this; each tick fires once however often it runs)."""
    return schedules.schedules_fire_due()
