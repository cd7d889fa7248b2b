"""The job lifecycle through jobs.services and jobs.runner, on the real database, run on the test's thread."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent
from aihub.access.models import Tenant
from aihub.api.problems import Conflict
from jobs import runner, services
from jobs.models import CancelMode, Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import UserFactory
from tests.jobs.helpers import assert_gap_free, assistant_messages, drain_sent_jobs, event_types, run_now
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db


def skip_concurrency_on_sqlite() -> None:
    if connection.vendor == "sqlite":
        # Django's SQLite test database lives in memory with a shared cache, where a connection that meets
        # another's write fails at once with "database table is locked" instead of waiting (no busy timeout).
        # Two threads at once need a real server; the PostgreSQL run has one.
        pytest.skip("needs PostgreSQL: the in-memory SQLite test database refuses concurrent connections")


def submit(agent: Agent, user: User, content: Any = "hello there world", **kwargs: Any) -> Job:
    job, created = services.job_submit(agent=agent, user=user, content=content, **kwargs)
    assert created
    return job


# --- Lifecycle ------------------------------------------------------------------------------------------------


def test_a_job_goes_from_queued_to_running_to_succeeded(echo: Agent, user: User) -> None:
    job = submit(echo, user, "hello there world")
    assert job.status == JobStatus.QUEUED
    assert job.agent_version == echo.version

    claimed = services.job_claim(job_id=job.pk, worker="w1")
    assert claimed is not None
    assert (claimed.status, claimed.attempts, claimed.worker) == (JobStatus.RUNNING, 1, "w1")
    assert claimed.started_at is not None

    runner.execute(claimed)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.output["content"] == [{"type": "text", "text": "hello there world"}]
    assert job.usage == {
        "input_tokens": 3,
        "output_tokens": 3,
        "total_tokens": 6,
        "cost": 0.0,
        "currency": "USD",
        "model": "offline/aihub-offline-1",
    }
    assert job.finished_at is not None
    [reply] = assistant_messages(job)
    assert job.output["message"] == str(reply.id)
    assert event_types(job.thread) == [
        "message.created",
        "job.queued",
        "job.started",
        "llm.started",
        "llm.chunk",
        "llm.chunk",
        "llm.chunk",
        "llm.completed",
        "message.created",
        "job.succeeded",
    ]
    assert assert_gap_free(job.thread)


def test_chunks_are_written_in_batches(echo: Agent, user: User, settings: Any) -> None:
    settings.JOBS_CHUNK_BATCH_SIZE = 4
    settings.JOBS_CHUNK_BATCH_SECONDS = 60
    job = submit(echo, user, " ".join(["word"] * 10))

    with CaptureQueriesContext(connection) as queries:
        job = run_now(job)

    # Every append reserves its sequence numbers with one UPDATE of the thread's counter.
    appends = [q for q in queries.captured_queries if "last_sequence = last_sequence +" in q["sql"]]
    # job.started, llm.started, chunk 1 (at once: the first token is not held back), chunks 2-5, chunks 6-9,
    # chunk 10 with llm.completed, the reply with job.succeeded; chunk by chunk it would have been fourteen.
    assert len(appends) == 7
    assert Event.objects.filter(job_id=job.pk, type="llm.chunk").count() == 10
    assert_gap_free(job.thread)


def test_a_job_is_claimed_only_once(echo: Agent, user: User) -> None:
    job = submit(echo, user)

    assert services.job_claim(job_id=job.pk, worker="w1") is not None
    assert services.job_claim(job_id=job.pk, worker="w2") is None

    job.refresh_from_db()
    assert (job.worker, job.attempts) == ("w1", 1)
    assert event_types(job.thread).count("job.started") == 1


def test_a_job_past_its_expiry_is_expired_instead_of_started(echo: Agent, user: User) -> None:
    job = submit(echo, user, expires_at=timezone.now() + timedelta(milliseconds=1))
    time.sleep(0.01)

    assert services.job_claim(job_id=job.pk, worker="w1") is None

    job.refresh_from_db()
    assert job.status == JobStatus.EXPIRED
    assert event_types(job.thread)[-1] == "job.expired"
    assert_gap_free(job.thread)


def test_a_job_of_an_unknown_agent_class_fails_with_a_problem(echo: Agent, user: User) -> None:
    job = submit(echo, user)
    echo.versions.filter(version=job.agent_version).update(snapshot={**echo.snapshot(), "class_name": "gone"})

    job = run_now(job)

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == "urn:aihub:problem:agent-misconfigured"
    assert event_types(job.thread)[-1] == "job.failed"
    assert_gap_free(job.thread)


# --- Busy threads ---------------------------------------------------------------------------------------------


def test_a_job_waits_while_an_earlier_job_of_its_thread_is_active_and_starts_when_it_ends(
    echo: Agent, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    first = submit(echo, user, "first")
    first_claim = services.job_claim(job_id=first.pk, worker="w1")
    assert first_claim is not None
    second = submit(echo, user, "second", thread=first.thread, busy="enqueue")

    assert services.job_claim(job_id=second.pk, worker="w2") is None, "it must wait for the first job"

    drain_sent_jobs()
    with django_capture_on_commit_callbacks(execute=True):
        runner.execute(first_claim)
    # Finishing the first job sends the waiting one to the workers ...
    assert drain_sent_jobs() == [str(second.pk)]
    # ... and now it may run.
    second = run_now(second)
    assert second.status == JobStatus.SUCCEEDED
    assert second.output["content"] == [{"type": "text", "text": "second"}]
    assert_gap_free(first.thread)


def test_busy_reject_refuses_a_message_to_a_thread_with_an_active_job(echo: Agent, user: User) -> None:
    first = submit(echo, user)
    messages_before = Message.objects.count()
    events_before = Event.objects.count()

    with pytest.raises(Conflict):
        services.job_submit(agent=echo, user=user, content="again", thread=first.thread, busy="reject")

    assert Job.objects.count() == 1
    assert (Message.objects.count(), Event.objects.count()) == (messages_before, events_before)
    assert_gap_free(first.thread)


@pytest.mark.django_db(transaction=True)
def test_busy_reject_gives_exactly_one_job_when_two_messages_arrive_at_once(tenant: Tenant) -> None:
    skip_concurrency_on_sqlite()
    echo = AgentFactory.create(tenant=tenant)
    alice = UserFactory.create()
    thread = services.job_submit(agent=echo, user=alice, content="seed")[0].thread
    Job.objects.update(status=JobStatus.SUCCEEDED)  # the thread is idle again
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def send(text: str) -> None:
        try:
            start.wait(timeout=5)
            services.job_submit(agent=echo, user=alice, content=text, thread=thread, busy="reject")
            outcomes.append("job")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()  # each thread had its own connection

    senders = [threading.Thread(target=send, args=(f"message {n}",)) for n in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=30)

    assert sorted(outcomes) == ["conflict", "job"]
    assert Job.objects.filter(thread=thread, status=JobStatus.QUEUED).count() == 1
    assert Message.objects.filter(thread=thread).count() == 2  # the seed and the one that won
    assert_gap_free(thread)
    drain_sent_jobs()


def test_busy_interrupt_cancels_the_running_job(echo: Agent, user: User) -> None:
    first = submit(echo, user, "first")
    first_claim = services.job_claim(job_id=first.pk, worker="w1")
    assert first_claim is not None

    second = submit(echo, user, "second", thread=first.thread, busy="interrupt")

    first.refresh_from_db()
    assert first.cancel_requested == CancelMode.IMMEDIATE
    runner.execute(first_claim)  # the runner notices at its first step
    first.refresh_from_db()
    assert first.status == JobStatus.CANCELLED
    assert assistant_messages(first) == []
    assert run_now(second).status == JobStatus.SUCCEEDED
    assert_gap_free(first.thread)


def test_busy_interrupt_cancels_a_queued_job_at_once(echo: Agent, user: User) -> None:
    first = submit(echo, user, "first")

    second = submit(echo, user, "second", thread=first.thread, busy="interrupt")

    first.refresh_from_db()
    assert first.status == JobStatus.CANCELLED
    assert run_now(second).status == JobStatus.SUCCEEDED
    assert_gap_free(first.thread)


# --- Cancelling -----------------------------------------------------------------------------------------------


def test_cancelling_a_queued_job_ends_it_at_once(echo: Agent, user: User) -> None:
    job = services.job_cancel(job=submit(echo, user), mode=CancelMode.AFTER_TURN)

    assert job.status == JobStatus.CANCELLED
    assert event_types(job.thread)[-1] == "job.cancelled"
    assert services.job_claim(job_id=job.pk, worker="w1") is None


@pytest.mark.django_db(transaction=True)
def test_cancel_immediate_stops_a_streaming_job_and_keeps_what_was_written(tenant: Tenant, settings: Any) -> None:
    skip_concurrency_on_sqlite()
    settings.JOBS_CHUNK_BATCH_SECONDS = 0.01
    slow = AgentFactory.create(tenant=tenant, config={"chunk_delay_seconds": 0.05})
    words = [f"w{n}" for n in range(40)]
    job = services.job_submit(agent=slow, user=UserFactory.create(), content=" ".join(words))[0]
    claimed = services.job_claim(job_id=job.pk, worker="w1")
    assert claimed is not None

    def run() -> None:
        try:
            runner.execute(claimed)
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while Event.objects.filter(job_id=job.pk, type="llm.chunk").count() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    services.job_cancel(job=job, mode=CancelMode.IMMEDIATE)
    worker.join(timeout=10)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    chunks = Event.objects.filter(job_id=job.pk, type="llm.chunk").count()
    assert 3 <= chunks < len(words), "stopped midway, keeping the chunks already written"
    assert assistant_messages(job) == []
    types = event_types(job.thread)
    assert "llm.completed" not in types
    assert types[-1] == "job.cancelled"
    assert_gap_free(job.thread)
    drain_sent_jobs()


def test_cancel_after_turn_lets_a_tools_agent_finish_its_turn(tenant: Tenant, user: User) -> None:
    calculator = AgentFactory.create(tenant=tenant, class_name="tools", tools=["calculator"])
    job = submit(calculator, user, "calculate 2 * (3 + 4)")
    claimed = services.job_claim(job_id=job.pk, worker="w1")
    assert claimed is not None

    services.job_cancel(job=job, mode=CancelMode.AFTER_TURN)
    runner.execute(claimed)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    types = event_types(job.thread)
    # The turn ran to its end: the model asked for the tool, and the tool answered ...
    assert types.count("llm.completed") == 1
    assert types.index("tool.started") < types.index("tool.completed") < types.index("job.cancelled")
    [result] = Event.objects.filter(job_id=job.pk, type="tool.completed")
    assert result.data["output"] == "14"
    # ... but no next turn was started.
    assert types.count("llm.started") == 1
    assert assistant_messages(job) == []
    assert_gap_free(job.thread)


def test_without_a_cancellation_the_tools_agent_answers_with_the_tool_result(tenant: Tenant, user: User) -> None:
    calculator = AgentFactory.create(tenant=tenant, class_name="tools", tools=["calculator"])

    job = run_now(submit(calculator, user, "calculate 2 * (3 + 4)"))

    assert job.status == JobStatus.SUCCEEDED
    assert "14" in job.output["content"][0]["text"]
    assert_gap_free(job.thread)


@pytest.mark.parametrize("final", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED])
def test_cancelling_a_finished_job_is_a_conflict(echo: Agent, user: User, final: JobStatus) -> None:
    job = submit(echo, user)
    services.job_finish(job=job, status=final)
    events_before = Event.objects.count()

    with pytest.raises(Conflict):
        services.job_cancel(job=job, mode=CancelMode.IMMEDIATE)

    job.refresh_from_db()
    assert job.status == final
    assert Event.objects.count() == events_before


# --- Idempotency ----------------------------------------------------------------------------------------------


def test_an_idempotency_key_returns_the_same_job_and_writes_nothing(echo: Agent, user: User) -> None:
    job = submit(echo, user, idempotency_key="order-42")
    counts = (Job.objects.count(), Message.objects.count(), Event.objects.count(), Thread.objects.count())

    again, created = services.job_submit(agent=echo, user=user, content="different", idempotency_key="order-42")

    assert (again.pk, created) == (job.pk, False)
    assert (Job.objects.count(), Message.objects.count(), Event.objects.count(), Thread.objects.count()) == counts


def test_an_idempotency_key_is_per_user(echo: Agent, user: User) -> None:
    mine = submit(echo, user, idempotency_key="order-42")

    theirs = submit(echo, UserFactory.create(), idempotency_key="order-42")

    assert theirs.pk != mine.pk


def test_a_retry_on_a_busy_thread_gets_its_job_instead_of_a_conflict(echo: Agent, user: User) -> None:
    job = submit(echo, user, idempotency_key="k")

    again, created = services.job_submit(agent=echo, user=user, content="x", thread=job.thread, idempotency_key="k")

    assert (again.pk, created) == (job.pk, False)


# --- The janitor ----------------------------------------------------------------------------------------------


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


def test_the_janitor_requeues_a_running_job_whose_heartbeat_went_stale(echo: Agent, user: User) -> None:
    job = submit(echo, user)
    assert services.job_claim(job_id=job.pk, worker="lost-worker") is not None

    counts = services.janitor_run(now=later(settings.JOBS_STALE_AFTER_SECONDS + 1))

    assert counts["retried"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker) == (JobStatus.QUEUED, 1, "")
    [requeued] = Event.objects.filter(job_id=job.pk, type="job.queued", data__retry=True)
    assert requeued.data["attempts"] == 1
    job = run_now(job, worker="w2")
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert_gap_free(job.thread)


def test_the_janitor_leaves_a_job_with_a_fresh_heartbeat_alone(echo: Agent, user: User) -> None:
    job = submit(echo, user)
    services.job_claim(job_id=job.pk, worker="w1")

    assert services.janitor_run()["retried"] == 0

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_the_janitor_fails_a_stale_job_that_used_its_last_attempt(echo: Agent, user: User) -> None:
    job = submit(echo, user)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    services.job_claim(job_id=job.pk, worker="lost-worker")

    counts = services.janitor_run(now=later(settings.JOBS_STALE_AFTER_SECONDS + 1))

    assert counts["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == "urn:aihub:problem:worker-lost"
    assert job.error["status"] == 503
    [failed] = Event.objects.filter(job_id=job.pk, type="job.failed")
    assert failed.data["error"]["type"] == "urn:aihub:problem:worker-lost"
    assert_gap_free(job.thread)


def test_the_janitor_cancels_a_stale_job_that_was_asked_to_stop(echo: Agent, user: User) -> None:
    job = submit(echo, user)
    services.job_claim(job_id=job.pk, worker="lost-worker")
    services.job_cancel(job=job, mode=CancelMode.IMMEDIATE)

    counts = services.janitor_run(now=later(settings.JOBS_STALE_AFTER_SECONDS + 1))

    assert counts["cancelled"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert_gap_free(job.thread)


def test_a_runner_whose_job_was_requeued_stops_without_touching_it(echo: Agent, user: User) -> None:
    job = submit(echo, user)
    stalled = services.job_claim(job_id=job.pk, worker="stalled")
    assert stalled is not None
    services.janitor_run(now=later(settings.JOBS_STALE_AFTER_SECONDS + 1))
    assert services.job_claim(job_id=job.pk, worker="w2") is not None

    runner.execute(stalled)  # the stalled worker wakes up

    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, "w2", 2)
    assert assistant_messages(job) == []
    assert "llm.started" not in event_types(job.thread)
    assert_gap_free(job.thread)


def test_the_janitor_expires_jobs_past_their_expiry(echo: Agent, user: User) -> None:
    job = submit(echo, user, expires_at=later(60))
    still_valid = submit(echo, UserFactory.create(), expires_at=later(600))

    counts = services.janitor_run(now=later(120))

    assert counts["expired"] == 1
    job.refresh_from_db()
    still_valid.refresh_from_db()
    assert (job.status, still_valid.status) == (JobStatus.EXPIRED, JobStatus.QUEUED)
    assert event_types(job.thread)[-1] == "job.expired"
    assert_gap_free(job.thread)


def test_the_janitor_resends_queued_jobs_whose_message_was_lost(
    echo: Agent, user: User, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.JOBS_STALE_AFTER_SECONDS = 3600  # the running job's worker is alive
    lost = submit(echo, user)
    other = UserFactory.create()
    running = submit(echo, other)
    services.job_claim(job_id=running.pk, worker="w1")
    waiting_behind_a_running_job = submit(echo, other, thread=running.thread, busy="enqueue")
    drain_sent_jobs()

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.janitor_run(now=later(settings.JOBS_RESEND_QUEUED_AFTER_SECONDS + 1))

    assert counts["resent"] == 1
    assert drain_sent_jobs() == [str(lost.pk)]
    waiting_behind_a_running_job.refresh_from_db()
    assert waiting_behind_a_running_job.status == JobStatus.QUEUED


def test_the_janitor_resends_queued_jobs_at_once_when_the_broker_restarted(
    echo: Agent,
    user: User,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    redis_url: str,
    broker_from_settings: None,
) -> None:
    settings.CELERY_BROKER_URL = redis_url
    drain_sent_jobs()
    just_queued = submit(echo, user)  # its message was in the Redis that restarted
    cache.set(services.BROKER_RUN_ID_CACHE_KEY, "the run before the restart")

    with django_capture_on_commit_callbacks(execute=True):
        assert services.janitor_run()["resent"] == 1
    assert drain_sent_jobs() == [str(just_queued.pk)]

    # The new run is remembered: from now on a queued job waits out the usual delay before it is re-sent.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.janitor_run()["resent"] == 0
    assert drain_sent_jobs() == []


def test_a_job_the_broker_refuses_stays_queued_and_the_janitor_sends_it_later(
    echo: Agent,
    user: User,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    broker_from_settings: None,
) -> None:
    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{closed_port}//"
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(echo, user)

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert "queued, not dispatched (the janitor re-sends it)" in caplog.text

    settings.CELERY_BROKER_URL = "memory://"
    drain_sent_jobs()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.janitor_run(now=later(settings.JOBS_RESEND_QUEUED_AFTER_SECONDS + 1))["resent"] == 1
    assert drain_sent_jobs() == [str(job.pk)]


def test_the_janitor_task_runs_the_janitor(echo: Agent, user: User) -> None:
    from jobs.tasks import janitor

    assert janitor() == {"retried": 0, "failed": 0, "cancelled": 0, "expired": 0, "resent": 0, "purged": 0}
