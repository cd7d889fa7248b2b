"""Settings come from the environment: embedded with nothing set, scaled out with URLs, strict in production.

Each case starts a fresh interpreter with a controlled environment, since settings are read once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Prints the settings under test as JSON; runs inside the child interpreter.
PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.db import connection
from aihub.celery import app

database = settings.DATABASES["default"]
probe = {
    "engine": database["ENGINE"],
    "name": str(database["NAME"]),
    "host": database.get("HOST", ""),
    "options": database.get("OPTIONS", {}),
    "conn_max_age": database.get("CONN_MAX_AGE", 0),
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "embedded_worker": settings.CELERY_EMBEDDED_WORKER,
    "always_eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "celery_always_eager": app.conf.task_always_eager,
    "debug": settings.DEBUG,
    "secret_key": settings.SECRET_KEY,
    "allowed_hosts": settings.ALLOWED_HOSTS,
}
if connection.vendor == "sqlite":
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        probe["journal_mode"] = cursor.fetchone()[0]
print(json.dumps(probe))
"""

A_SECRET_KEY = "a-production-secret-key-that-is-long-enough-0123456789"


def start_django(var_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run the probe with only ``variables`` set (plus what any process needs), in the repository root."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "aihub.settings",
        # Keeps the SQLite file and any media out of the repository.
        "AIHUB_VAR_DIR": str(var_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def settings_with(var_dir: Path, **variables: str) -> dict[str, Any]:
    result = start_django(var_dir, **variables)
    assert result.returncode == 0, result.stderr
    probe: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return probe


def refusal_with(var_dir: Path, **variables: str) -> str:
    """The error a start-up that must fail prints."""
    result = start_django(var_dir, **variables)
    assert result.returncode != 0, f"Django started although it should have refused: {result.stdout}"
    assert "ImproperlyConfigured" in result.stderr
    return result.stderr


def test_with_no_variables_it_runs_embedded(tmp_path: Path) -> None:
    probe = settings_with(tmp_path)

    assert probe["debug"] is True
    assert probe["engine"] == "aihub.sqlite"
    assert Path(probe["name"]).parent == tmp_path
    assert probe["journal_mode"] == "wal"
    assert probe["channel_layer"] == "aihub.layers.SharedMessageChannelLayer"
    assert probe["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert probe["broker"] == "memory://"
    assert probe["embedded_worker"] is True


def test_tasks_are_never_executed_eagerly_by_the_server(tmp_path: Path) -> None:
    probe = settings_with(tmp_path)

    assert probe["always_eager"] is False
    assert probe["celery_always_eager"] is False


def test_database_and_redis_urls_scale_it_out(tmp_path: Path) -> None:
    # Nothing connects while settings load, so addresses that do not resolve are fine here.
    probe = settings_with(
        tmp_path,
        DATABASE_URL="postgres://aihub:secret@db.invalid:5432/aihub",
        REDIS_URL="redis://redis.invalid:6379/0",
    )

    assert probe["engine"] == "django.db.backends.postgresql"
    assert probe["host"] == "db.invalid"
    assert probe["name"] == "aihub"
    assert probe["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert probe["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert probe["broker"] == "redis://redis.invalid:6379/0"
    assert probe["embedded_worker"] is False
    assert probe["always_eager"] is False
    assert not list(tmp_path.glob("*.sqlite3"))


def test_postgresql_gets_a_connection_pool_sized_from_the_environment(tmp_path: Path) -> None:
    probe = settings_with(
        tmp_path,
        DATABASE_URL="postgres://aihub:secret@db.invalid:5432/aihub",
        DATABASE_POOL_MAX_SIZE="7",
        DATABASE_POOL_TIMEOUT_SECONDS="1.5",
    )

    assert probe["options"]["pool"] == {"min_size": 1, "max_size": 7, "timeout": 1.5, "max_idle": 60.0}
    # Django refuses persistent connections beside a pool: the pool keeps them.
    assert probe["conn_max_age"] == 0


def test_without_the_pool_postgresql_connections_close_with_each_request_by_default(tmp_path: Path) -> None:
    probe = settings_with(tmp_path, DATABASE_URL="postgres://aihub:secret@db.invalid:5432/aihub", DATABASE_POOL="false")

    assert "pool" not in probe["options"]
    assert probe["conn_max_age"] == 0


def test_a_sqlite_database_url_gets_the_embedded_databases_safe_options(tmp_path: Path) -> None:
    probe = settings_with(tmp_path / "var", DATABASE_URL=f"sqlite:///{tmp_path}/elsewhere.sqlite3")

    assert probe["engine"] == "aihub.sqlite"
    assert probe["journal_mode"] == "wal"
    assert probe["options"]["transaction_mode"] == "IMMEDIATE"
    assert probe["options"]["timeout"] == 20
    # Whatever the database, the folders aihub writes to exist (beat's schedule and media live there).
    assert (tmp_path / "var" / "media").is_dir()


def test_a_separate_broker_url_takes_precedence_over_redis(tmp_path: Path) -> None:
    probe = settings_with(
        tmp_path,
        REDIS_URL="redis://redis.invalid:6379/0",
        CELERY_BROKER_URL="amqp://guest@rabbit.invalid:5672//",
    )

    assert probe["broker"] == "amqp://guest@rabbit.invalid:5672//"
    assert probe["embedded_worker"] is False


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    error = refusal_with(tmp_path, DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="aihub.example.com")

    assert "DJANGO_SECRET_KEY" in error


def test_production_refuses_a_short_secret_key(tmp_path: Path) -> None:
    error = refusal_with(
        tmp_path, DJANGO_DEBUG="false", DJANGO_SECRET_KEY="too-short", DJANGO_ALLOWED_HOSTS="aihub.example.com"
    )

    assert "at least 32 characters" in error


def test_production_refuses_to_start_without_allowed_hosts(tmp_path: Path) -> None:
    error = refusal_with(tmp_path, DJANGO_DEBUG="false", DJANGO_SECRET_KEY=A_SECRET_KEY)

    assert "DJANGO_ALLOWED_HOSTS" in error


def test_production_reads_the_secret_key_from_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text(A_SECRET_KEY + "\n")

    probe = settings_with(
        tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY_FILE=str(key_file),
        DJANGO_ALLOWED_HOSTS="aihub.example.com,api.aihub.example.com",
    )

    assert probe["debug"] is False
    assert probe["secret_key"] == A_SECRET_KEY
    assert probe["allowed_hosts"] == ["aihub.example.com", "api.aihub.example.com"]


@pytest.mark.parametrize("value", ["0", "off", "no"])
def test_any_usual_spelling_of_false_turns_debug_off(tmp_path: Path, value: str) -> None:
    error = refusal_with(tmp_path, DJANGO_DEBUG=value)

    assert "DJANGO_SECRET_KEY" in error
