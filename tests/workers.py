"""Real ``celery -A aihub worker`` processes on the test's PostgreSQL database and Redis broker, as fixtures.

A worker is a separate process, so it shares the test database pytest-django made and the Redis broker, and
tests that use one commit for real (``transaction=True``). On the embedded run (SQLite in memory, in-memory
broker) such tests skip: a separate process cannot share either.
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

from tests.conftest import require_service
from tests.jobs.helpers import drain_sent_jobs

PROJECT_DIR = Path(__file__).resolve().parents[1]
WORKER_READY_SECONDS = 30


def shared_database_url() -> str:
    db = connection.settings_dict  # NAME is the test database here
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def require_services_run() -> None:
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


@pytest.fixture
def services_run() -> None:
    """PostgreSQL and a Redis broker, or a clear skip."""
    require_services_run()


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


def launch_worker(*, log: Path, name: str, env: dict[str, str] | None = None, concurrency: int = 1) -> Worker:
    """A `celery -A aihub worker` (threads pool) on the test database, once it is ready to take tasks."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "aihub", "worker"),
            *("--pool", "threads", "--concurrency", str(concurrency), "-Q", "celery", "--loglevel", "info"),
            *("--without-mingle", "--without-gossip", "--hostname", name),
        ],
        cwd=PROJECT_DIR,
        env={
            **os.environ,
            "DATABASE_URL": shared_database_url(),
            "REDIS_URL": str(settings.REDIS_URL or settings.CELERY_BROKER_URL),
            "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
            "CELERY_EMBEDDED_WORKER": "false",
            **(env or {}),
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = Worker(process, log, name)
    deadline = time.monotonic() + WORKER_READY_SECONDS
    while " ready." not in worker.output():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"the worker did not start:\n{worker.output()}")
        time.sleep(0.05)
    return worker


@pytest.fixture
def start_worker(services_run: None, transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``start_worker(env={...}, concurrency=1)``: a `celery -A aihub worker` (threads pool) on the test database,
    ready to take tasks.

    Stopped before the test database is flushed (this fixture depends on it), so no worker holds a lock then.
    """
    drain_sent_jobs()  # messages that earlier tests sent to the broker are not this test's
    started: list[Worker] = []

    def start(env: dict[str, str] | None = None, concurrency: int = 1) -> Worker:
        name = f"e2e{len(started) + 1}-{os.getpid()}@localhost"
        worker = launch_worker(
            log=tmp_path / f"worker-{len(started) + 1}.log", name=name, env=env, concurrency=concurrency
        )
        started.append(worker)
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
