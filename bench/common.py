"""What the benchmark scripts share: percentiles, a throwaway PostgreSQL database, Django configured in a folder.

The scripts run as ``python bench/NAME.py``; each puts the repository root on ``sys.path`` before importing this.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

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


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the processes, then wait for each (killing what does not stop within 15 s)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
