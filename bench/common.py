"""What the benchmark scripts share: percentiles, a throwaway PostgreSQL database, Django configured in a folder,
a real server (daphne, and a celery worker) seeded with the demo.

The scripts run as ``python bench/NAME.py``; each puts the repository root on ``sys.path`` before importing this.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent

# PostgreSQL with pgvector (the knowledge app needs it): by default the bundled one that
# `python scripts/pgserver.py start var/pgserver 54329` starts.
DEFAULT_POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:54329")


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` (0.5 the median) of the sorted values, by the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def recreate_database(server: str, name: str, *, drop_only: bool = False) -> None:
    """Drop ``name`` on ``server`` (closing its connections) and, unless ``drop_only``, create it empty."""
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def configure_django(var_dir: Path, *, database_url: str | None = None) -> None:
    """Settings for a run in ``var_dir``: SQLite there unless ``database_url``; no Redis; DEBUG off, quiet logs."""
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "aihub.settings",
            "AIHUB_VAR_DIR": str(var_dir),
            "SQLITE_PATH": str(var_dir / "bench.sqlite3"),
            "DJANGO_MEDIA_ROOT": str(var_dir / "media"),
            "DJANGO_STATIC_ROOT": str(var_dir / "static"),
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "AIHUB_LOG_LEVEL": "WARNING",
        }
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    (var_dir / "static").mkdir(exist_ok=True)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listen_on(port: int) -> str:
    """daphne's endpoint on localhost, with a listen backlog for bursts of clients (Twisted's default, 50, overflows
    and the kernel drops the connections beyond it)."""
    return f"tcp:port={port}:interface=127.0.0.1:backlog=1024"


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the processes, then wait for each (killing what does not stop within 15 s)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def http_json(url: str, *, body: dict[str, Any] | None = None, token: str = "") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300
    )
    return done.stdout.decode()


@dataclass
class Server:
    base: str
    token: str
    pid: int
    worker_pid: int | None = None


@contextmanager
def serve(env: dict[str, str], *, worker: bool, worker_name: str = "bench@%h") -> Iterator[Server]:
    """Migrate, seed the demo, start daphne (and a celery worker): the server and a demo API token."""
    manage(env, "migrate", "--noinput", "-v0")
    token = re.search(r"aih_\S+", manage(env, "seed_demo", "--token"))
    assert token is not None
    manage(env, "seed_demo_agents")
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-e", listen_on(port), "aihub.asgi:application"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    if worker:
        processes.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "aihub", "worker", "--pool", "threads", "--concurrency"),
                    *("1", "--without-gossip", "--without-mingle", "--loglevel", "WARNING", "--hostname"),
                    worker_name,
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = http_json(f"{base}/api/v1/health/ready")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)
        yield Server(base, token.group(0), processes[0].pid, processes[1].pid if worker else None)
    finally:
        stop_processes(processes)


def server_env(var_dir: str, *, database_url: str = "", redis_url: str = "") -> dict[str, str]:
    """The environment of a benchmarked server in ``var_dir``, quiet, with the rate limits out of the way:
    embedded, or with ``database_url`` and ``redis_url`` scaled out."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        AIHUB_VAR_DIR=var_dir,
        AIHUB_LOG_LEVEL="WARNING",
        # One address opens every connection here: the per-address connection limit would refuse most of them.
        AIHUB_WS_CONNECT_RATE="",
        AIHUB_THROTTLE_TOKEN="100000/minute",
        DJANGO_SETTINGS_MODULE="aihub.settings",
        PYTHONPATH=str(REPO_ROOT),
    )
    if database_url:  # scaled out: separate celery workers on that database and Redis
        env.update(
            DATABASE_URL=database_url, REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_EMBEDDED_WORKER="false"
        )
    return env
