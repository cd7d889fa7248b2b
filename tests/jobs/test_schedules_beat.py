"""Schedules under a real beat: the server as `make run` starts it (embedded worker and beat threads), with
beat looking for due schedules every half second."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import REPO, base_env, http_json, start_daphne, stop_server

# The server is the embedded one whatever the suite's configuration: run once, in the embedded suite.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="drives the embedded server: run once, in the embedded suite"
)


@pytest.fixture(scope="module")
def fast_beat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, str]]]:
    env = base_env(tmp_path_factory) | {"JOBS_SCHEDULES_TICK_SECONDS": "0.5"}
    server, base = start_daphne(env)
    try:
        seeded = subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--token"], cwd=REPO, env=env, check=True, capture_output=True
        )
        subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
        token = re.search(r"aih_\S+", seeded.stdout.decode())
        assert token is not None, seeded.stdout
        yield base, token.group(0), env
    finally:
        stop_server(server)


def make_due_now(env: dict[str, str], schedule_id: str) -> None:
    """Move the schedule's tick to now, in the server's database (cron ticks are a minute apart)."""
    code = (
        "from django.utils import timezone; from jobs.models import Schedule; "
        f"assert Schedule.objects.filter(pk='{schedule_id}').update(next_run_at=timezone.now()) == 1"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True, timeout=60)


def wait_for_jobs(url: str, token: str, *, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_json(url, token=token)
        assert status == 200, body
        if until(body["items"]) or time.monotonic() > deadline:
            return list(body["items"])
        time.sleep(0.3)


def test_beat_fires_a_due_schedule_once_and_the_job_runs(fast_beat_server: tuple[str, str, dict[str, str]]) -> None:
    base, token, env = fast_beat_server
    status, schedule = http_json(
        f"{base}/api/v1/demo/schedules/",
        # Once a year, so that the only tick in this test is the one moved to now below.
        body={"name": "new year", "agent": "echo", "cron": "0 0 1 1 *", "input": "scheduled hello"},
        token=token,
    )
    assert status == 201, schedule
    jobs_url = f"{base}/api/v1/demo/schedules/{schedule['id']}/jobs"

    make_due_now(env, schedule["id"])
    jobs = wait_for_jobs(jobs_url, token, until=lambda items: items and items[0]["status"] == "succeeded")

    assert len(jobs) == 1, jobs
    assert jobs[0]["status"] == "succeeded", jobs
    assert jobs[0]["output"]["content"][0]["text"] == "scheduled hello"
    # A few more beats fire nothing more; the job is on /jobs like any other.
    time.sleep(1.5)
    assert len(wait_for_jobs(jobs_url, token, until=lambda items: True)) == 1
    status, listed = http_json(f"{base}/api/v1/demo/jobs/", token=token)
    assert status == 200 and jobs[0]["id"] in [item["id"] for item in listed["items"]]
    status, after = http_json(f"{base}/api/v1/demo/schedules/{schedule['id']}/", token=token)
    assert (after["last_job"], after["last_error"]) == (jobs[0]["id"], None)
