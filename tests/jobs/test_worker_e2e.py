"""Jobs run by real ``celery -A aihub worker`` processes on PostgreSQL + Redis, including one killed mid-job.

The worker is a separate process, so it shares the test's database (the test database pytest-django made) and
the Redis broker, and these tests commit for real (``transaction=True``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from aihub.access.models import Membership
from jobs import services
from jobs.models import FINAL_STATUSES, Job, JobStatus
from jobs.tasks import janitor
from tests.agents.factories import AgentFactory
from tests.conftest import require_service
from tests.helpers import ClientAs
from tests.jobs.helpers import assert_gap_free, assistant_messages, drain_sent_jobs, event_types
from threads.models import Event

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PROJECT_DIR = Path(__file__).resolve().parents[2]
WORKER_READY_SECONDS = 30

# Small, so that a worker's heartbeat goes stale a moment after it is killed.
FAST_JANITOR_ENV = {"JOBS_HEARTBEAT_SECONDS": "0.2", "JOBS_STALE_AFTER_SECONDS": "1"}


def _database_url() -> str:
    db = connection.settings_dict  # NAME is the test database here
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def services_run() -> None:
    """PostgreSQL and a Redis broker, or a clear skip."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL and Redis: a separate worker process cannot share the embedded run's in-memory "
            "broker or its in-memory SQLite test database"
        )
    broker = str(settings.CELERY_BROKER_URL)
    if broker.startswith("memory://"):
        pytest.skip("needs a Redis broker: a separate worker process cannot share the in-memory broker")
    require_service("Redis", broker)


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, name: str) -> None:
        self.process = process
        self.log = log
        self.name = name

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        # Cold shutdown: the test's jobs have ended, and a warm one would first wait out the broker poll.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(services_run: None, transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``start_worker(env={...})``: a `celery -A aihub worker` on the test database, ready to take tasks.

    Stopped before the test database is flushed (this fixture depends on it), so no worker holds a lock then.
    """
    drain_sent_jobs()  # messages that earlier tests sent to the broker are not this test's
    started: list[Worker] = []

    def start(env: dict[str, str] | None = None) -> Worker:
        name = f"e2e{len(started) + 1}-{os.getpid()}@localhost"
        log = tmp_path / f"worker-{len(started) + 1}.log"
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "aihub", "worker"),
                *("--pool", "threads", "--concurrency", "1", "-Q", "celery", "--loglevel", "info"),
                *("--without-mingle", "--without-gossip", "--hostname", name),
            ],
            cwd=PROJECT_DIR,
            env={
                **os.environ,
                "DATABASE_URL": _database_url(),
                "REDIS_URL": str(settings.REDIS_URL or settings.CELERY_BROKER_URL),
                "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
                "CELERY_EMBEDDED_WORKER": "false",
                **(env or {}),
            },
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        worker = Worker(process, log, name)
        started.append(worker)
        deadline = time.monotonic() + WORKER_READY_SECONDS
        while " ready." not in worker.output():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not start:\n{worker.output()}")
            time.sleep(0.05)
        return worker

    yield start
    for worker in started:
        worker.stop()
    drain_sent_jobs()


def wait_for(condition: Callable[[], Any], *, timeout: float = 20, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
