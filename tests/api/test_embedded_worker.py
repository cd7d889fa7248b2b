"""The embedded configuration runs Celery tasks on a worker thread inside the process, never eagerly."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from aihub.celery import app as celery_app
from aihub.celery import embedded_worker_alive, start_embedded_worker, stop_embedded_worker

ran_on: list[str] = []
ran = threading.Event()


@celery_app.task(name="tests.api.record_the_thread")
def record_the_thread() -> None:
    ran_on.append(threading.current_thread().name)
    ran.set()


@pytest.fixture(scope="module", autouse=True)
def in_memory_broker() -> Iterator[None]:
    """The embedded default, whichever configuration the suite runs in."""
    with pytest.MonkeyPatch.context() as env:
        # Celery prefers the CELERY_BROKER_URL environment variable (set in the services run) to settings.
        env.delenv("CELERY_BROKER_URL", raising=False)
        with override_settings(CELERY_BROKER_URL="memory://", CELERY_EMBEDDED_WORKER=True):
            assert celery_app.conf.broker_url == "memory://"
            yield


@pytest.fixture(scope="module")
def embedded_worker(in_memory_broker: None) -> Iterator[threading.Thread]:
    thread = start_embedded_worker()
    assert thread is not None
    yield thread
    # Stopped, so that the tasks of later tests stay queued unless those tests start a worker themselves.
    stop_embedded_worker()
    assert not embedded_worker_alive()


def test_tasks_are_not_executed_eagerly() -> None:
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    assert celery_app.conf.task_always_eager is False


def test_nothing_runs_the_task_without_a_worker() -> None:
    assert not embedded_worker_alive()
    ran.clear()

    record_the_thread.delay()

    assert not ran.wait(timeout=0.3)
    # Drain what this test queued, so that no later worker runs it by surprise.
    celery_app.control.purge()


def test_a_task_sent_with_delay_runs_on_the_embedded_worker(embedded_worker: threading.Thread) -> None:
    ran.clear()
    ran_on.clear()

    record_the_thread.delay()

    assert ran.wait(timeout=10), "the embedded worker did not run the task"
    assert ran_on and ran_on[0] != threading.current_thread().name


def test_starting_the_embedded_worker_again_returns_the_same_thread(embedded_worker: threading.Thread) -> None:
    assert start_embedded_worker() is embedded_worker
    assert embedded_worker.is_alive()
    assert [t for t in threading.enumerate() if t.name == "aihub-embedded-worker"] == [embedded_worker]
