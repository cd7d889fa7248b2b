"""Waiting for a job (jobs.selectors.job_wait): woken by the channel layer, not by polling the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from jobs import selectors, services
from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)


def submitted(agent: Agent, user: User) -> Job:
    job, _ = services.job_submit(agent=agent, user=user, content="hello")
    return job


def status_reads(queries: CaptureQueriesContext) -> int:
    return sum(1 for query in queries.captured_queries if 'SELECT "jobs_job"."status"' in query["sql"])


def wait_while(job: Job, action: Callable[[], object], *, after: float, timeout: float) -> tuple[bool, float]:
    """Wait for ``job`` while ``action`` runs ``after`` seconds in; (what job_wait said, seconds it took after)."""

    async def scenario() -> tuple[bool, float]:
        waiting = asyncio.create_task(selectors.job_wait(job=job, timeout=timeout))
        await asyncio.sleep(after)
        await sync_to_async(action)()
        acted = time.monotonic()
        ended = await waiting
        return ended, time.monotonic() - acted

    return async_to_sync(scenario)()


def test_a_waiter_wakes_as_the_job_ends_with_one_read_of_the_database(echo: Agent, user: User) -> None:
    job = submitted(echo, user)

    with CaptureQueriesContext(connection) as queries:
        ended, woke_after = wait_while(
            job, lambda: services.job_finish(job=job, status=JobStatus.CANCELLED), after=0.3, timeout=10
        )

    assert ended
    # The final event is published on commit and wakes the waiter at once; a poll would come only at the re-check.
    assert woke_after < selectors.JOB_WAIT_RECHECK_SECONDS / 4
    assert status_reads(queries) == 1, "the waiter read the job's status more than once: it polled"


def test_a_waiter_wakes_when_the_job_asks_for_action(echo: Agent, user: User) -> None:
    job = submitted(echo, user)
    claimed = services.job_claim(job_id=job.pk, worker="w1")
    assert claimed is not None

    ended, woke_after = wait_while(
        job,
        lambda: services.job_await(job=claimed, request={"type": "input", "prompt": "Which one?"}, state={}, usage={}),
        after=0.2,
        timeout=10,
    )

    assert ended
    assert woke_after < selectors.JOB_WAIT_RECHECK_SECONDS / 4


def test_a_waiter_notices_an_end_the_channel_layer_never_delivered(
    echo: Agent, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "JOB_WAIT_RECHECK_SECONDS", 0.3)
    job = submitted(echo, user)

    # Written behind the services' back: no event is published, only the row changes.
    ended, woke_after = wait_while(
        job, lambda: Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED), after=0.1, timeout=10
    )

    assert ended
    assert woke_after < 1.0


def test_a_waiter_gives_up_at_its_timeout_and_says_so(echo: Agent, user: User) -> None:
    job = submitted(echo, user)
    started = time.monotonic()

    ended = async_to_sync(selectors.job_wait)(job=job, timeout=0.3)

    assert not ended
    assert 0.3 <= time.monotonic() - started < 1.5


def test_a_waiter_for_a_job_that_already_ended_returns_at_once(echo: Agent, user: User) -> None:
    job = submitted(echo, user)
    services.job_finish(job=job, status=JobStatus.CANCELLED)
    started = time.monotonic()

    assert async_to_sync(selectors.job_wait)(job=job, timeout=10)
    assert time.monotonic() - started < 0.5
