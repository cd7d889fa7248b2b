"""Celery tasks of jobs: thin, idempotent, taking ids and loading fresh rows."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.conf import settings

from jobs import runner, services


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
