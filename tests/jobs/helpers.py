"""What the jobs tests share: running a job the way a worker does, reading the event log, and the broker."""

from __future__ import annotations

import uuid
from typing import Any

from jobs import runner, services
from jobs.models import Job
from tests.helpers import drain_sent_tasks
from threads.models import Event, Message, Thread


def run_now(job: Job, *, worker: str = "test-worker") -> Job:
    """Claim and run the job on this thread, as the run_job task does; returns it reloaded."""
    claimed = services.job_claim(job_id=job.pk, worker=worker)
    assert claimed is not None, f"{job} could not be claimed"
    runner.execute(claimed)
    return Job.objects.get(pk=job.pk)


def event_types(thread: Thread | uuid.UUID, **filters: Any) -> list[str]:
    thread_id = thread.pk if isinstance(thread, Thread) else thread
    return list(
        Event.objects.filter(thread_id=thread_id, **filters).order_by("sequence").values_list("type", flat=True)
    )


def assert_gap_free(thread: Thread | uuid.UUID) -> list[int]:
    """The thread's events are numbered exactly 1..N, and the thread's counter stands at N."""
    thread_id = thread.pk if isinstance(thread, Thread) else thread
    sequences = list(Event.objects.filter(thread_id=thread_id).order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1)), sequences
    assert Thread.objects.get(pk=thread_id).last_sequence == len(sequences)
    return sequences


def assistant_messages(job: Job) -> list[Message]:
    return list(Message.objects.filter(job_id=job.pk, role="assistant"))


def drain_sent_jobs() -> list[str]:
    """Take every message off the default Celery queue; returns the job ids of the run_job messages, in order."""
    return drain_sent_tasks("jobs.run_job")
