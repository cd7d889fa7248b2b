"""aihub's SQLite backend: connections are reused across threads, and the process's writers queue on a lock."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from aihub.settings import SQLITE_OPTIONS
from aihub.sqlite.base import DatabaseWrapper, _write_lock


@pytest.fixture(autouse=True)
def _own_files(django_db_blocker: Any) -> Any:
    # These tests open SQLite files of their own, not the suite's test database.
    with django_db_blocker.unblock():
        yield


def wrapper_for(path: Path) -> DatabaseWrapper:
    settings_dict: dict[str, Any] = {
        "ENGINE": "aihub.sqlite",
        "NAME": str(path),
        "OPTIONS": dict(SQLITE_OPTIONS),
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TIME_ZONE": None,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "TEST": {},
    }
    return DatabaseWrapper(settings_dict, alias=f"sqlite-test-{path.name}")


def test_a_closed_connection_is_taken_again_by_the_next_thread_that_needs_one(tmp_path: Path) -> None:
    first = wrapper_for(tmp_path / "reuse.sqlite3")
    first.ensure_connection()
    raw = first.connection
    first.close()

    taken: list[Any] = []

    def connect_on_another_thread() -> None:
        other = wrapper_for(tmp_path / "reuse.sqlite3")
        other.ensure_connection()
        taken.append(other.connection)
        with other.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            taken.append(cursor.fetchone()[0])
        other.close()

    thread = threading.Thread(target=connect_on_another_thread)
    thread.start()
    thread.join()

    assert taken == [raw, "wal"]


def test_concurrent_read_then_write_transactions_all_land_and_the_lock_is_given_back(tmp_path: Path) -> None:
    path = tmp_path / "writers.sqlite3"
    setup = wrapper_for(path)
    with setup.cursor() as cursor:
        cursor.execute("CREATE TABLE counter (n INTEGER)")
        cursor.execute("INSERT INTO counter VALUES (0)")
    setup.close()
    errors: list[BaseException] = []

    def increment(times: int) -> None:
        wrapper = wrapper_for(path)
        try:
            for _ in range(times):
                # A read, then a write, in one transaction: the upgrade that fails with "database is locked"
                # when two deferred transactions meet.
                with wrapper.cursor() as cursor:
                    wrapper._start_transaction_under_autocommit()
                    cursor.execute("SELECT n FROM counter")
                    value = cursor.fetchone()[0]
                    cursor.execute("UPDATE counter SET n = %s", [value + 1])
                    wrapper.commit()
        except BaseException as error:
            errors.append(error)
        finally:
            wrapper.close()

    threads = [threading.Thread(target=increment, args=(50,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    check = wrapper_for(path)
    with check.cursor() as cursor:
        cursor.execute("SELECT n FROM counter")
        assert cursor.fetchone()[0] == 200
    check.close()
    assert errors == []
    assert not _write_lock.locked()
