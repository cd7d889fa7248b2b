"""The serving path (message → job → events → reply) through real servers, next to a floor measured in the same run.

Run from the repository root: ``python bench/serving.py [--setups embedded,scaled] [--clients 1,32,200]``.

For each setup it starts aihub as an operator would and drives it with one asyncio + httpx client:

- ``embedded``: daphne alone on SQLite, with the in-process worker, in-memory channel layer and broker;
- ``scaled``: daphne on PostgreSQL (``BENCH_POSTGRES``, default the bundled server on port 54329) and Redis
  (``BENCH_REDIS_URL``, default db 9), with ``--workers`` (default 2) ``celery worker`` processes
  (``--pool``, default threads, ``--concurrency`` 4).

One unit = create a thread, then post one 50-word message to an instant echo agent (50 ``llm.chunk`` events, no
sleeps), answered either with ``?wait=true`` (the finished job) or ``?stream=true`` (SSE to the job's final
event). ``--units`` units (default 500) after ``--warmup`` (default 20), at each of ``--clients`` concurrent
clients. DEBUG is off and the throttles are raised out of the way.

The floor, on the same ASGI server and the same database: bench/serving_floor.py, a bare ASGI app that does the
same number of writes per unit (statements and transactions as the query-count tests pin them) without the
framework, and answers JSON or an event stream of the same length. The ratio aihub/floor is the framework's cost.

It prints units/s, p50/p95/p99 latency, for streams the first-token and last-event latency (from the message
POST), server CPU per unit (daphne and the workers, from /proc), and errors by status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    DEFAULT_POSTGRES,
    REPO_ROOT,
    free_port,
    listen_on,
    percentile,
    recreate_database,
    stop_processes,
)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
DATABASE = "aihub_bench_serving"
FLOOR_DATABASE = "aihub_bench_floor"
MESSAGE = " ".join(f"word{n}" for n in range(50))
SEED = """
import django
django.setup()
from agents import services as agents
from aihub.access import services as access
user = access.user_create(username="bench")
tenant = access.tenant_create(slug="bench", name="Bench", owner=user)
agents.agent_create(tenant=tenant, slug="echo", class_name="echo")
agents.agent_create(tenant=tenant, slug="slow", class_name="echo", config={"chunk_delay_seconds": 0.05})
print(access.api_token_create(user=user, name="bench", tenant=tenant)[1])
"""


@dataclass
class Server:
    base: str
    processes: list[subprocess.Popen[bytes]]
    token: str = ""

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for process in self.processes:
            with open(f"/proc/{process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    last_events: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu: float = 0.0


def base_environment(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="aihub.settings",
        AIHUB_VAR_DIR=str(var_dir),
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_STATIC_ROOT=str(var_dir / "static"),
        AIHUB_LOG_LEVEL="ERROR",
        AIHUB_THROTTLE_TOKEN="100000000/minute",
        AIHUB_THROTTLE_IP="100000000/minute",
        # The repository first; an operator's own PYTHONPATH (plug-ins, extra packages) after it.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


def start_daphne(env: dict[str, str], application: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-e", listen_on(port), application]
    # BENCH_SERVER_LOG=path keeps the server's output (errors only: AIHUB_LOG_LEVEL is ERROR) for a look afterwards.
    log_path = os.environ.get("BENCH_SERVER_LOG")
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the server's whole life
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/v1/health", timeout=2)
            return process, base
        except OSError as error:
            if getattr(error, "code", None):  # any HTTP answer (the floor's 404) means it is up
                return process, base
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"daphne ({application}) did not start") from None
            time.sleep(0.2)


@contextmanager
def aihub(setup: str, args: argparse.Namespace, *, redis_url: str = REDIS_URL, beat: bool = False) -> Iterator[Server]:
    """aihub as an operator runs it (see the module's docstring); scaled out with ``args.workers`` workers and, with
    ``beat``, one ``celery beat`` (the janitor's schedule). The API token of tenant ``bench`` is ``Server.token``."""
    with tempfile.TemporaryDirectory(prefix="aihub-bench-") as folder:
        var_dir = Path(folder)
        (var_dir / "static").mkdir()
        env = base_environment(var_dir)
        if setup == "scaled":
            recreate_database(DEFAULT_POSTGRES, DATABASE)
            import redis

            redis.Redis.from_url(redis_url).flushdb()
            env.update(DATABASE_URL=f"{DEFAULT_POSTGRES}/{DATABASE}", REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "-c", SEED], cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            if setup == "scaled":
                for index in range(args.workers):
                    worker = [sys.executable, "-m", "celery", "-A", "aihub", "worker", "--pool", args.pool]
                    worker += ["--concurrency", str(args.concurrency), "--hostname", f"bench{index}@%h"]
                    worker += ["--loglevel", "ERROR", "--without-gossip", "--without-mingle", "--without-heartbeat"]
                    # The banner on stdout is noise here; errors (stderr) still show.
                    processes.append(subprocess.Popen(worker, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL))
                if beat:
                    scheduler = [sys.executable, "-m", "celery", "-A", "aihub", "beat", "--loglevel", "ERROR"]
                    processes.append(subprocess.Popen(scheduler, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL))
            daphne, base = start_daphne(env, "aihub.asgi:application")
            processes.insert(0, daphne)
            yield Server(base=base, processes=processes, token=seeded.stdout.strip().splitlines()[-1])
        finally:
            stop_processes(processes)
            if setup == "scaled":
                recreate_database(DEFAULT_POSTGRES, DATABASE, drop_only=True)


@contextmanager
def floor(setup: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="aihub-bench-floor-") as folder:
        if setup == "scaled":
            recreate_database(DEFAULT_POSTGRES, FLOOR_DATABASE)
            url = f"{DEFAULT_POSTGRES}/{FLOOR_DATABASE}"
        else:
            url = str(Path(folder) / "floor.sqlite3")
        env = {**os.environ, "FLOOR_DATABASE_URL": url, "PYTHONPATH": str(REPO_ROOT)}
        process, base = start_daphne(env, "bench.serving_floor:application")
        try:
            yield Server(base=base, processes=[process])
        finally:
            stop_processes([process])
            if setup == "scaled":
                recreate_database(DEFAULT_POSTGRES, FLOOR_DATABASE, drop_only=True)


class Driver:
    """Units against aihub's API or the floor's routes."""

    def __init__(self, server: Server, *, is_floor: bool) -> None:
        import httpx2

        self.server = server
        self.is_floor = is_floor
        headers = {} if is_floor else {"Authorization": f"Bearer {server.token}"}
        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
        self.client = httpx2.AsyncClient(base_url=server.base, headers=headers, limits=limits, timeout=120)

    async def unit(self, mode: str, result: Result) -> None:
        started = time.perf_counter()
        try:
            thread_url = "/thread" if self.is_floor else "/api/v1/bench/threads/"
            response = await self.client.post(thread_url, json={"title": ""})
            if response.status_code != 201:
                result.errors[str(response.status_code)] += 1
                return
            thread = response.json()["id"]
            url = f"/message/{thread}" if self.is_floor else f"/api/v1/bench/threads/{thread}/messages/"
            body = {"content": MESSAGE, "agent": "echo"}
            posted = time.perf_counter()
            if mode == "wait":
                response = await self.client.post(url, params={"wait": "true"}, json=body)
                if response.status_code != 200 or response.json().get("status") != "succeeded":
                    result.errors[str(response.status_code)] += 1
                    return
            elif not await self._stream(url, body, posted, result):
                return
        except Exception as error:  # a refused or dropped connection counts, by kind
            result.errors[type(error).__name__] += 1
            return
        result.latencies.append(time.perf_counter() - started)

    async def _stream(self, url: str, body: dict[str, str], posted: float, result: Result) -> bool:
        """Read the stream to the job's final event; False (counted as an error) when it does not get there."""
        params = {"stream": "1"} if self.is_floor else {"stream": "true"}
        async with self.client.stream("POST", url, params=params, json=body) as response:
            if response.status_code != 200:
                result.errors[str(response.status_code)] += 1
                return False
            first: float | None = None
            async for line in response.aiter_lines():
                if line.startswith("event: llm.chunk") and first is None:
                    first = time.perf_counter() - posted
                elif line.startswith("event: job.") and line.split(": ", 1)[1] in FINAL_EVENTS:
                    result.last_events.append(time.perf_counter() - posted)
                    if first is not None:
                        result.first_tokens.append(first)
                    return True
        result.errors["stream ended early"] += 1
        return False

    async def run(self, mode: str, *, clients: int, units: int) -> Result:
        result = Result()
        remaining = units

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.unit(mode, result)

        cpu = self.server.cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        result.elapsed = time.perf_counter() - started
        result.cpu = self.server.cpu_seconds() - cpu
        return result


FINAL_EVENTS = {"job.succeeded", "job.failed", "job.cancelled", "job.expired"}


def ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.1f}" if values else "-"


def report(label: str, result: Result, units: int, floor_result: Result | None) -> dict[str, object]:
    done = len(result.latencies)
    rate = done / result.elapsed if result.elapsed else 0.0
    row: dict[str, object] = {
        "label": label,
        "units_per_s": round(rate, 1),
        "p50_ms": ms(result.latencies, 0.5),
        "p95_ms": ms(result.latencies, 0.95),
        "p99_ms": ms(result.latencies, 0.99),
        "first_token_p50_ms": ms(result.first_tokens, 0.5),
        "last_event_p50_ms": ms(result.last_events, 0.5),
        "last_event_p99_ms": ms(result.last_events, 0.99),
        "cpu_ms_per_unit": round(result.cpu * 1000 / max(done, 1), 1),
        "errors": dict(result.errors) or "none",
    }
    if floor_result is not None and floor_result.latencies:
        floor_rate = len(floor_result.latencies) / floor_result.elapsed
        row["vs_floor"] = f"{rate / floor_rate:.2f}x units/s"
    print(json.dumps(row), flush=True)
    return row


async def measure(server: Server, *, is_floor: bool, mode: str, clients: int, args: argparse.Namespace) -> Result:
    driver = Driver(server, is_floor=is_floor)
    try:
        await driver.run(mode, clients=min(clients, args.warmup), units=args.warmup)
        return await driver.run(mode, clients=clients, units=args.units)
    finally:
        await driver.client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setups", default="embedded,scaled")
    parser.add_argument("--clients", default="1,32,200")
    parser.add_argument("--modes", default="wait,stream")
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads", help="The workers' Celery pool (threads, prefork, gevent).")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]
    modes = args.modes.split(",")

    for setup in args.setups.split(","):
        floors: dict[tuple[str, int], Result] = {}
        with floor(setup) as floor_server:
            for mode in modes:
                for count in clients:
                    result = asyncio.run(measure(floor_server, is_floor=True, mode=mode, clients=count, args=args))
                    floors[(mode, count)] = result
                    report(f"floor {setup} {mode} {count} clients", result, args.units, None)
        with aihub(setup, args) as server:
            for mode in modes:
                for count in clients:
                    result = asyncio.run(measure(server, is_floor=False, mode=mode, clients=count, args=args))
                    report(f"aihub {setup} {mode} {count} clients", result, args.units, floors[(mode, count)])


if __name__ == "__main__":
    main()
