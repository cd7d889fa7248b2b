"""Sustained load, overload recovery and a Redis restart, on the scaled-out setup, against the issue's targets.

Run from the repository root: ``python bench/resilience.py [--scenarios sustained,overload,redis-restart]``. Each
scenario starts aihub as an operator runs it scaled out (bench/serving.py's ``aihub``: daphne on PostgreSQL,
``--workers`` celery workers of the threads pool, one ``celery beat`` for the janitor) on a private
``redis-server`` without persistence (so a restart loses what Redis held, the worst case), with default settings.

- ``sustained``: ``--followers`` SSE followers (one per thread) connect first, then message POSTs go out at
  ``--rate`` a second for ``--seconds`` (open loop: sent on time, whatever the answers), round robin over the
  followed threads with ``busy=enqueue``. Printed: POSTs answered by status, POST latency, how many jobs are
  still unfinished 20 s after the last POST, whether every accepted message was persisted with its reply, and
  whether every follower received exactly its thread's event log (every id once, in order).
- ``overload``: ``--overload-rate`` POSTs a second (new thread + message, no wait) for ``--overload-seconds``,
  then 10 a second for 30 s. Printed: errors by status in each phase, and the recovery time: from the end of
  the overload to the last failed request of the 10/s phase (0 when none failed). Target: ≤ 10 s, no restart.
- ``redis-restart``: ``--jobs`` jobs of a slow echo agent (20 words, 50 ms each) are submitted, then Redis is
  restarted while most are still queued (their task messages are lost). Printed: how long after Redis was back
  the last job ended (target ≤ 30 s), their statuses, and whether every thread's log is gap-free with one reply.

There is no framework-free floor for a fault: the figures are printed beside the issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DEFAULT_POSTGRES, free_port, percentile
from bench.serving import DATABASE, Server, aihub

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
MESSAGE = " ".join(f"word{n}" for n in range(20))


class PrivateRedis:
    """A ``redis-server`` of this run alone, without persistence: a restart forgets every key and message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the private redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def scaled_stack(args: argparse.Namespace) -> Iterator[tuple[Server, PrivateRedis]]:
    with tempfile.TemporaryDirectory(prefix="aihub-bench-redis-") as folder:
        redis_server = PrivateRedis(Path(folder))
        redis_server.start()
        try:
            with aihub("scaled", args, redis_url=redis_server.url, beat=True) as server:
                yield server, redis_server
        finally:
            redis_server.stop()


def database() -> Any:
    import psycopg

    return psycopg.connect(f"{DEFAULT_POSTGRES}/{DATABASE}", autocommit=True)


def client(server: Server) -> Any:
    import httpx2

    limits = httpx2.Limits(max_connections=2000, max_keepalive_connections=2000)
    headers = {"Authorization": f"Bearer {server.token}"}
    return httpx2.AsyncClient(base_url=server.base, headers=headers, limits=limits, timeout=60)


@dataclass
class Posts:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failures_at: list[float] = field(default_factory=list)  # when each failed request was sent (monotonic)
    jobs: list[str] = field(default_factory=list)


async def post_message(http: Any, posts: Posts, *, thread: str | None, agent: str = "echo") -> None:
    sent = time.monotonic()
    try:
        if thread is None:
            created = await http.post("/api/v1/bench/threads/", json={"title": ""})
            if created.status_code != 201:
                raise _Refused(created.status_code)
            thread = created.json()["id"]
        answer = await http.post(
            f"/api/v1/bench/threads/{thread}/messages/", json={"content": MESSAGE, "agent": agent, "busy": "enqueue"}
        )
        if answer.status_code != 202:
            raise _Refused(answer.status_code)
        posts.jobs.append(answer.json()["id"])
        posts.statuses["202"] += 1
        posts.latencies.append(time.monotonic() - sent)
    except _Refused as refused:
        posts.statuses[str(refused.status)] += 1
        posts.failures_at.append(sent)
    except Exception as error:  # a refused or dropped connection counts too, by kind
        posts.statuses[type(error).__name__] += 1
        posts.failures_at.append(sent)


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


async def open_loop(http: Any, posts: Posts, *, rate: float, seconds: float, threads: list[str] | None) -> None:
    """Send ``rate`` POSTs a second for ``seconds``, each on its own schedule (not after the previous answer)."""
    tasks = []
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        thread = threads[n % len(threads)] if threads else None
        tasks.append(asyncio.create_task(post_message(http, posts, thread=thread)))
    await asyncio.gather(*tasks)


def unfinished(connection: Any) -> int:
    return connection.execute("SELECT count(*) FROM jobs_job WHERE status IN ('queued', 'running')").fetchone()[0]


def wait_until_finished(connection: Any, *, timeout: float) -> float | None:
    """Seconds until no job is queued or running (None: still some after ``timeout``)."""
    started = time.monotonic()
    while unfinished(connection):
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.2)
    return time.monotonic() - started


def logs_whole(connection: Any) -> tuple[int, int]:
    """(threads whose log has a gap or a repeat, jobs without exactly one reply)."""
    gaps = connection.execute(
        "SELECT count(*) FROM (SELECT thread_id FROM threads_event GROUP BY thread_id "
        "HAVING count(*) <> max(sequence) OR count(DISTINCT sequence) <> count(*)) AS broken"
    ).fetchone()[0]
    replies = connection.execute(
        "SELECT count(*) FROM jobs_job j WHERE j.status = 'succeeded' AND (SELECT count(*) FROM threads_message m "
        "WHERE m.job_id = j.id AND m.role = 'assistant') <> 1"
    ).fetchone()[0]
    return gaps, replies


def ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.0f}" if values else "-"


def report(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


# --- sustained ------------------------------------------------------------------------------------------------


class Follower:
    """One SSE client of one thread for the whole run: every event id it received, in order."""

    def __init__(self, http: Any, thread: str) -> None:
        self.http, self.thread = http, thread
        self.ids: list[int] = []
        self.live = asyncio.Event()
        self.error = ""

    async def follow(self) -> None:
        try:
            async with self.http.stream("GET", f"/api/v1/bench/threads/{self.thread}/stream", timeout=None) as answer:
                if answer.status_code != 200:
                    self.error = str(answer.status_code)
                    self.live.set()
                    return
                async for line in answer.aiter_lines():
                    if line.startswith("id: "):
                        self.ids.append(int(line[4:]))
                    elif line == "event: stream.mode":
                        self.live.set()
                self.error = "closed by the server"  # a follower's stream has no end of its own
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.error = type(error).__name__
            self.live.set()


def deviation(received: list[int], logged: list[int]) -> str:
    """How a follower's ids differ from its thread's log ('' when they do not)."""
    if received == logged:
        return ""
    if len(set(received)) < len(received):
        return "repeated ids"
    if received == logged[: len(received)]:
        return "missing the tail"
    if set(received) < set(logged):
        return "missing ids in between"
    return "out of order or unknown ids"


async def sustained(server: Server, args: argparse.Namespace) -> None:
    http = client(server)
    try:
        threads = []
        for _ in range(args.followers):
            threads.append((await http.post("/api/v1/bench/threads/", json={"title": ""})).json()["id"])
        followers = [Follower(http, thread) for thread in threads]
        tasks = [asyncio.create_task(follower.follow()) for follower in followers]
        await asyncio.wait_for(asyncio.gather(*(f.live.wait() for f in followers)), timeout=60)
        posts = Posts()
        started, server_cpu, client_cpu = time.monotonic(), server.cpu_seconds(), time.process_time()
        await open_loop(http, posts, rate=args.rate, seconds=args.seconds, threads=threads)
        elapsed = time.monotonic() - started
        server_cpu, client_cpu = server.cpu_seconds() - server_cpu, time.process_time() - client_cpu
        with database() as connection:
            await asyncio.sleep(20)
            left_after_20s = unfinished(connection)
            drained = await asyncio.to_thread(wait_until_finished, connection, timeout=300)
            await asyncio.sleep(2)  # the last final events on their way to the followers
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            logged = dict(
                connection.execute(
                    "SELECT thread_id::text, array_agg(sequence ORDER BY sequence) FROM threads_event GROUP BY 1"
                ).fetchall()
            )
            persisted = connection.execute(
                "SELECT count(*) FROM threads_message WHERE role = 'user' AND thread_id::text = ANY(%s)", [threads]
            ).fetchone()[0]
            gaps, replies = logs_whole(connection)
        exact = sum(1 for f in followers if not f.error and f.ids == logged.get(f.thread, []))
        deviations = Counter(deviation(f.ids, logged.get(f.thread, [])) for f in followers if not f.error)
        deviations.pop("", None)
        report(
            {
                "scenario": f"sustained: {args.followers} SSE followers, {args.rate:g} POSTs/s for {args.seconds:g} s",
                "posts_per_s": round(sum(posts.statuses.values()) / elapsed, 1),
                "answers": dict(posts.statuses),
                "post_p50_ms": ms(posts.latencies, 0.5),
                "post_p95_ms": ms(posts.latencies, 0.95),
                "unfinished_jobs_20s_after": left_after_20s,
                "drained_s_after_that": round(drained, 1) if drained is not None else "not within 300 s",
                "accepted": posts.statuses["202"],
                "persisted": persisted,
                "threads_with_gaps": gaps,
                "jobs_without_one_reply": replies,
                "followers_exactly_once": f"{exact}/{len(followers)}",
                "follower_deviations": dict(deviations) or "none",
                "follower_errors": dict(Counter(f.error for f in followers if f.error)) or "none",
                "server_cpu_share": f"{server_cpu / elapsed:.2f} cores",
                "client_cpu_share": f"{client_cpu / elapsed:.2f} cores",
                "target": "zero errors, every message persisted, every follower every event exactly once",
            }
        )
    finally:
        await http.aclose()


# --- overload -------------------------------------------------------------------------------------------------


async def overload(server: Server, args: argparse.Namespace) -> None:
    http = client(server)
    try:
        heavy, calm = Posts(), Posts()
        await open_loop(http, heavy, rate=args.overload_rate, seconds=args.overload_seconds, threads=None)
        overload_ended = time.monotonic()
        await open_loop(http, calm, rate=10, seconds=30, threads=None)
        recovery = max((at - overload_ended for at in calm.failures_at), default=0.0)
        with database() as connection:
            drained = wait_until_finished(connection, timeout=300)
            gaps, replies = logs_whole(connection)
        report(
            {
                "scenario": f"overload: {args.overload_rate:g} POSTs/s for {args.overload_seconds:g} s, then 10/s",
                "overload_answers": dict(heavy.statuses),
                "calm_answers": dict(calm.statuses),
                "calm_p50_ms": ms(calm.latencies, 0.5),
                "calm_p95_ms": ms(calm.latencies, 0.95),
                "recovery_s": round(max(recovery, 0.0), 1),
                "queue_drained_s_after_calm": round(drained, 1) if drained is not None else "not within 300 s",
                "threads_with_gaps": gaps,
                "jobs_without_one_reply": replies,
                "target": "recovery ≤ 10 s with no restart",
            }
        )
    finally:
        await http.aclose()


# --- Redis restart --------------------------------------------------------------------------------------------


async def redis_restart(server: Server, redis_server: PrivateRedis, args: argparse.Namespace) -> None:
    http = client(server)
    try:
        posts = Posts()
        await asyncio.gather(*(post_message(http, posts, thread=None, agent="slow") for _ in range(args.jobs)))
        with database() as connection:
            queued = connection.execute("SELECT count(*) FROM jobs_job WHERE status = 'queued'").fetchone()[0]
            redis_server.stop()
            await asyncio.sleep(1.0)
            redis_server.start()
            back = time.time()
            drained = await asyncio.to_thread(wait_until_finished, connection, timeout=300)
            statuses = dict(connection.execute("SELECT status, count(*) FROM jobs_job GROUP BY 1").fetchall())
            last = connection.execute("SELECT extract(epoch FROM max(finished_at)) FROM jobs_job").fetchone()[0]
            gaps, replies = logs_whole(connection)
        report(
            {
                "scenario": f"redis restart (no persistence) with {args.jobs} slow jobs submitted",
                "submitted": dict(posts.statuses),
                "queued_at_restart": queued,
                "last_job_ended_s_after_redis_back": round(float(last) - back, 1) if drained is not None else "-",
                "statuses": statuses,
                "threads_with_gaps": gaps,
                "jobs_without_one_reply": replies,
                "target": "every queued job finished ≤ 30 s after Redis is back",
            }
        )
    finally:
        await http.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="sustained,overload,redis-restart")
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--overload-rate", type=float, default=60)
    parser.add_argument("--overload-seconds", type=float, default=15)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    for scenario in args.scenarios.split(","):
        with scaled_stack(args) as (server, redis_server):
            if scenario == "sustained":
                asyncio.run(sustained(server, args))
            elif scenario == "overload":
                asyncio.run(overload(server, args))
            elif scenario == "redis-restart":
                asyncio.run(redis_restart(server, redis_server, args))
            else:
                raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
