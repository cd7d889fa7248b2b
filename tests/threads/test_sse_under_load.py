"""The serving path under a steady load, scaled out for real: the issue's sustained scenario in a short form.

daphne on the test's PostgreSQL database and Redis (channels-redis, Redis broker), two ``celery worker``
processes of four threads each, 50 SSE followers (one per thread) connected first, then 10 message POSTs a
second for 5 seconds, one to each followed thread. Every POST is accepted, every message and reply persisted,
and every follower receives every event of its thread exactly once, in order, the final one promptly. The 50
open streams are more than the server's pool of 20 database connections: an open stream holds none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aihub.access.models import Membership
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import IssuedApiToken
from tests.servers import Stream, base_env, http_json, start_daphne, stop_server
from tests.workers import Worker, shared_database_url, wait_for
from threads import services
from threads.events import JOB_FINAL_EVENTS
from threads.models import Event, Message

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FOLLOWERS = 50
POSTS_PER_SECOND = 10
# From the job's end (its finished_at) to the follower holding its final event. Before followers were woken
# through the channel layer, about one stream in five waited 5 s for the periodic database re-check.
PROMPT_SECONDS = 2.0
MESSAGE = " ".join(f"word{n}" for n in range(20))


@pytest.fixture
def server(
    start_worker: Callable[..., Worker], tmp_path_factory: pytest.TempPathFactory, settings: Any
) -> Iterator[str]:
    """daphne and two workers (threads pool, 4 each) on the test database and the suite's Redis."""
    env = base_env(tmp_path_factory) | {
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": str(settings.REDIS_URL or settings.CELERY_BROKER_URL),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "CELERY_EMBEDDED_WORKER": "false",
        "AIHUB_SSE_KEEPALIVE_SECONDS": "1",
    }
    process, base = start_daphne(env)
    for _ in range(2):
        start_worker(concurrency=4)
    yield base
    stop_server(process)


class Follower(threading.Thread):
    """One SSE client of one thread: keeps the (id, type) of every event frame until a job's final event."""

    def __init__(self, base: str, path: str, token: str) -> None:
        super().__init__(daemon=True)
        self.base, self.path, self.token = base, path, token
        self.live = threading.Event()
        self.events: list[tuple[int, str]] = []
        self.final_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        stream = Stream(self.base, self.path, token=self.token)
        try:
            assert stream.response.status == 200, stream.response.status
            for frame in stream.frames():
                if frame.get("event") == "stream.mode":
                    self.live.set()
                elif "id" in frame:
                    self.events.append((int(frame["id"]), frame["event"]))
                    if frame["event"] in JOB_FINAL_EVENTS:
                        self.final_at = time.time()
                        return
        except BaseException as error:  # reported by the test, which asserts on it
            self.error = error
        finally:
            stream.close()


def test_fifty_sse_followers_under_ten_posts_a_second_get_every_event_once_and_the_end_promptly(
    server: str, membership: Membership, token_for: Callable[..., IssuedApiToken], tmp_path: Path
) -> None:
    tenant = membership.tenant
    token = token_for(membership).raw
    AgentFactory.create(tenant=tenant, slug="echo")
    threads = [
        services.thread_create(tenant=tenant, created_by=membership.user, title=f"Load {n}") for n in range(FOLLOWERS)
    ]
    followers = [Follower(server, f"/api/v1/{tenant.slug}/threads/{t.pk}/stream", token) for t in threads]
    for follower in followers:
        follower.start()
    for follower in followers:
        assert follower.live.wait(timeout=30), follower.error

    answers: list[int] = []
    started = time.monotonic()
    for n, thread in enumerate(threads):
        time.sleep(max(0.0, started + n / POSTS_PER_SECOND - time.monotonic()))
        status, body = http_json(
            f"{server}/api/v1/{tenant.slug}/threads/{thread.pk}/messages/",
            body={"content": MESSAGE, "agent": "echo"},
            token=token,
        )
        answers.append(status)
        assert status == 202, body
    for follower in followers:
        follower.join(timeout=30)

    assert answers == [202] * FOLLOWERS
    wait_for(lambda: Job.objects.filter(thread__in=threads, status=JobStatus.SUCCEEDED).count() == FOLLOWERS)
    for thread, follower in zip(threads, followers, strict=True):
        assert follower.error is None, follower.error
        logged = list(Event.objects.filter(thread=thread).order_by("sequence").values_list("sequence", "type"))
        assert follower.events == logged, f"thread {thread.pk}"
        assert Message.objects.filter(thread=thread).count() == 2  # the message and its reply
        job = Job.objects.get(thread=thread)
        assert job.finished_at is not None and follower.final_at is not None
        late = follower.final_at - job.finished_at.timestamp()
        assert late <= PROMPT_SECONDS, f"the final event of {thread.pk} arrived {late:.2f} s after the job ended"
