"""Jobs run by real ``celery -A aihub worker`` processes on PostgreSQL + Redis, including one killed mid-job.

The worker is a separate process, so it shares the test's database (the test database pytest-django made) and
the Redis broker, and these tests commit for real (``transaction=True``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from aihub.access.models import Membership
from jobs import services
from jobs.models import FINAL_STATUSES, Job, JobStatus
from jobs.tasks import janitor
from tests.agents.factories import AgentFactory
from tests.helpers import ClientAs
from tests.jobs.helpers import assert_gap_free, assistant_messages, event_types
from tests.workers import Worker, wait_for
from threads.models import Event

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# Small, so that a worker's heartbeat goes stale a moment after it is killed.
FAST_JANITOR_ENV = {"JOBS_HEARTBEAT_SECONDS": "0.2", "JOBS_STALE_AFTER_SECONDS": "1"}


def wait_until_final(job: Job, worker: Worker, timeout: float = 20) -> Job:
    try:
        return wait_for(
            lambda: Job.objects.filter(pk=job.pk, status__in=FINAL_STATUSES).first(), timeout=timeout, what="the job"
        )
    except AssertionError:
        pytest.fail(f"{Job.objects.get(pk=job.pk)} did not finish; worker log:\n{worker.output()}")


def test_a_job_submitted_through_the_api_is_run_by_a_worker(
    start_worker: Callable[..., Worker], client_as: ClientAs, membership: Membership
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="echo")
    worker = start_worker()

    response = client_as(membership).post(
        f"/api/v1/{membership.tenant.slug}/jobs/", {"agent": "echo", "input": "hello from the api"}, format="json"
    )
    assert response.status_code == 202, response.content

    job = wait_until_final(Job.objects.get(pk=response.json()["id"]), worker)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.worker, job.attempts) == (worker.name, 1)
    assert job.output["content"] == [{"type": "text", "text": "hello from the api"}]
    assert event_types(job.thread) == [
        "message.created",
        "job.queued",
        "job.started",
        "llm.started",
        *["llm.chunk"] * 4,
        "llm.completed",
        "message.created",
        "job.succeeded",
    ]
    assert_gap_free(job.thread)


@pytest.mark.parametrize("max_attempts", [2, 1], ids=["retried-and-recovers", "last-attempt-fails-cleanly"])
def test_a_job_whose_worker_is_killed_midway_recovers_or_fails_cleanly(
    start_worker: Callable[..., Worker], membership: Membership, settings: Any, max_attempts: int
) -> None:
    settings.JOBS_MAX_ATTEMPTS = max_attempts
    slow = AgentFactory.create(tenant=membership.tenant, config={"chunk_delay_seconds": 0.05})
    words = [f"w{n}" for n in range(30)]
    victim = start_worker(env=FAST_JANITOR_ENV)
    job, _ = services.job_submit(agent=slow, user=membership.user, content=" ".join(words))

    wait_for(lambda: Event.objects.filter(job_id=job.pk, type="llm.chunk").count() >= 3, what="the first chunks")
    victim.kill()
    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, victim.name, 1)
    chunks_before = Event.objects.filter(job_id=job.pk, type="llm.chunk").count()
    assert chunks_before < len(words), "killed midway"

    # A new worker starts (its start-up takes longer than the 1 s stale limit), and the beat's janitor runs.
    rescuer = start_worker(env=FAST_JANITOR_ENV)
    janitor.delay()

    job = wait_until_final(job, rescuer)
    types = event_types(job.thread)
    if max_attempts == 2:
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert (job.attempts, job.worker) == (2, rescuer.name)
        [reply] = assistant_messages(job)
        assert reply.content == [{"type": "text", "text": " ".join(words)}]
        # The first attempt's chunks stay in the log; the janitor re-queues the job, and the second attempt
        # streams the whole answer again.
        first_start = types.index("job.started")
        assert "job.queued" in types[first_start:]
        assert types.count("job.started") == 2
        assert types.count("llm.chunk") == chunks_before + len(words)
        assert types[-1] == "job.succeeded"
    else:
        assert job.status == JobStatus.FAILED
        assert job.error is not None
        assert job.error["type"] == "urn:aihub:problem:worker-lost"
        assert job.attempts == 1
        assert assistant_messages(job) == []
        assert types.count("job.started") == 1
        assert types[-1] == "job.failed"
    assert_gap_free(job.thread)
    # The killed worker's task message is still unacknowledged in Redis; if it is ever delivered again, the
    # claim refuses it, so the job never runs twice.
    assert services.job_claim(job_id=job.pk, worker="late") is None


def test_a_job_that_yields_nothing_for_longer_than_the_stale_limit_keeps_its_worker(
    start_worker: Callable[..., Worker], membership: Membership, settings: Any
) -> None:
    # A word every 2.5 s: between them the agent is as silent as one waiting on a slow model call, for longer
    # than the worker's 1 s stale limit. The runner's heartbeat thread keeps the job its own meanwhile.
    slow = AgentFactory.create(tenant=membership.tenant, config={"chunk_delay_seconds": 2.5})
    worker = start_worker(env=FAST_JANITOR_ENV)
    job, _ = services.job_submit(agent=slow, user=membership.user, content="slow words")
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(), what="the job to start")

    settings.JOBS_STALE_AFTER_SECONDS = 1  # the janitor's, as the worker's
    before_the_first_word = time.monotonic() + 2
    while time.monotonic() < before_the_first_word:
        time.sleep(0.3)
        assert services.janitor_run()["retried"] == 0

    job = wait_until_final(job, worker)
    assert (job.status, job.attempts, job.worker) == (JobStatus.SUCCEEDED, 1, worker.name)
    assert_gap_free(job.thread)


def test_a_killed_workers_job_succeeds_within_twenty_seconds_with_the_default_settings(
    start_worker: Callable[..., Worker], membership: Membership, settings: Any
) -> None:
    slow = AgentFactory.create(tenant=membership.tenant, config={"chunk_delay_seconds": 0.05})
    victim = start_worker()
    job, _ = services.job_submit(agent=slow, user=membership.user, content=" ".join(["word"] * 30))
    wait_for(lambda: Event.objects.filter(job_id=job.pk, type="llm.chunk").count() >= 3, what="the first chunks")
    victim.kill()
    killed_at = time.monotonic()
    rescuer = start_worker()

    # What Celery beat does with the default schedule: the janitor every JOBS_JANITOR_INTERVAL_SECONDS.
    interval = settings.CELERY_BEAT_SCHEDULE["jobs-janitor"]["schedule"]
    next_janitor = killed_at
    while time.monotonic() - killed_at < 20 and not Job.objects.filter(pk=job.pk, status__in=FINAL_STATUSES):
        if time.monotonic() >= next_janitor:
            services.janitor_run()
            next_janitor += interval
        time.sleep(0.05)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker) == (JobStatus.SUCCEEDED, 2, rescuer.name), (
        f"{job} {time.monotonic() - killed_at:.1f} s after the kill; worker log:\n{rescuer.output()}"
    )
    assert_gap_free(job.thread)
