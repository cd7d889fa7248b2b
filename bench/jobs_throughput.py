"""Jobs per second and dispatch latency through real Celery workers, next to a bare Celery no-op task.

Run from the repository root with PostgreSQL and Redis up: ``python bench/jobs_throughput.py [--jobs 200]``.
It creates (and afterwards drops) the database ``aihub_bench``, starts two ``celery -A aihub worker``
processes on Redis, and measures in the same run:

- baseline: N bare tasks (``bench.noop``) — from ``apply_async`` to the task body starting, and N / wall time;
- jobs: N messages to the echo agent through ``jobs.services.job_submit`` — from the job row's creation to
  ``started_at`` (dispatch latency), and N / (last finish - first submit) (jobs/s).

The ratio says what aihub's job machinery (message + job rows, event log, claiming, the agent run) costs on
top of Celery itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DEFAULT_POSTGRES, REPO_ROOT, percentile, recreate_database

SERVER = DEFAULT_POSTGRES  # with pgvector, which the knowledge app's migrations need
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
DATABASE = "aihub_bench"
DONE_KEY = "bench:noop:done"


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DATABASE_URL=f"{SERVER}/{DATABASE}",
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=REDIS_URL,
        DJANGO_SETTINGS_MODULE="aihub.settings",
        AIHUB_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    workers = []
    for index in range(count):
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "aihub",
                    "worker",
                    "--pool",
                    "threads",
                    "--concurrency",
                    "1",
                    "--include",
                    "bench.noop_task",
                    "--hostname",
                    f"bench{index}@%h",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=REPO_ROOT,
                env=env,
            )
        )
    return workers


def wait_for_workers(app: object, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []  # type: ignore[attr-defined]
        if len(replies) >= count:
            return
    raise SystemExit("The workers did not start within 30 s.")


def bench_noop(n: int) -> tuple[float, list[float]]:
    import redis

    from bench.noop_task import noop

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(DONE_KEY)
    started = time.time()
    for _ in range(n):
        noop.apply_async(args=(time.time(),))
    while client.llen(DONE_KEY) < n:
        time.sleep(0.01)
    records = [json.loads(item) for item in client.lrange(DONE_KEY, 0, -1)]
    finished = max(done for _sent, _began, done in records)
    return n / (finished - started), [began - sent for sent, began, _done in records]


def bench_jobs(n: int) -> tuple[float, list[float]]:
    from agents import services as agent_services
    from aihub.access import services as access_services
    from jobs import services as job_services
    from jobs.models import FINAL_STATUSES, Job

    user = access_services.user_create(username="bench")
    tenant = access_services.tenant_create(slug="bench", name="Bench", owner=user)
    agent = agent_services.agent_create(tenant=tenant, slug="echo", class_name="echo")
    started = time.time()
    ids = [job_services.job_submit(agent=agent, user=user, content=f"job {i}")[0].pk for i in range(n)]
    while Job.objects.filter(pk__in=ids).exclude(status__in=FINAL_STATUSES).exists():
        time.sleep(0.02)
    jobs = list(Job.objects.filter(pk__in=ids))
    failed = [j for j in jobs if j.status != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} job(s) did not succeed, e.g. {failed[0].status}: {failed[0].error}")
    finished = max(j.finished_at for j in jobs if j.finished_at).timestamp()
    latencies = [(j.started_at - j.created_at).total_seconds() for j in jobs if j.started_at]
    return n / (finished - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="Jobs (and no-op tasks) per measurement.")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    recreate_database(SERVER, DATABASE)
    env = environment()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
    os.environ.update(env)
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    from aihub.celery import app

    workers = start_workers(env, args.workers)
    try:
        wait_for_workers(app, args.workers)
        bench_noop(20)  # warm up both paths
        noop_rate, noop_latency = bench_noop(args.jobs)
        jobs_rate, jobs_latency = bench_jobs(args.jobs)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        recreate_database(SERVER, DATABASE, drop_only=True)

    print(
        f"{args.jobs} each, {args.workers} workers (threads pool, concurrency 1), PostgreSQL + Redis, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'':<26}{'per second':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for label, rate, latency in (
        ("bare Celery no-op task", noop_rate, noop_latency),
        ("echo agent job", jobs_rate, jobs_latency),
    ):
        print(
            f"{label:<26}{rate:>12.1f}{percentile(latency, 0.5) * 1000:>10.1f}{percentile(latency, 0.99) * 1000:>10.1f}"
        )
    print(
        f"jobs/s vs no-op tasks/s: {jobs_rate / noop_rate:.3f}; dispatch p50 ratio: "
        f"{statistics.median(jobs_latency) / statistics.median(noop_latency):.1f}x"
    )


if __name__ == "__main__":
    main()
