"""Django's SQLite backend, with the process's writers queued on a lock of their own.

SQLite allows one writer at a time. With ``BEGIN IMMEDIATE`` a second writer waits in SQLite's busy handler,
which sleeps and retries with growing pauses (up to 100 ms each): under load (the server's request threads and
the embedded worker's threads all writing) a transaction waited far longer than the one ahead of it took, and
latency at 32 clients grew to seconds while the process sat idle. Writers of one process (which the embedded
setup is) now queue on a ``threading.Lock`` taken before ``BEGIN IMMEDIATE`` and given back at commit or
rollback, so the next one starts the moment the lock is free. Other processes (a management command beside
the server) still meet in SQLite's busy handler, as before. An in-memory database (the test suite's) is left
as Django has it.

Connections are kept, too: a closed connection goes back to a process-wide idle list (up to
``IDLE_CONNECTIONS``) and the next thread that needs one takes it, the way a PostgreSQL pool works. Under ASGI
every request runs on a thread of its own, so "persistent connections" never outlived a request: each one
opened a connection (registering Django's SQL functions, running the PRAGMAs) and closed it, and closing the
last connection of the file made SQLite checkpoint its WAL and sync the disk, request after request.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db.backends.sqlite3 import base

_write_lock = threading.Lock()
_idle_lock = threading.Lock()
_idle: dict[str, list[Any]] = {}
IDLE_CONNECTIONS = 16


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_lock = False

    def get_new_connection(self, conn_params: Any) -> Any:
        if not self.is_in_memory_db():
            with _idle_lock:
                idle = _idle.get(self.settings_dict["NAME"])
                if idle:
                    return idle.pop()
        return super().get_new_connection(conn_params)

    def _start_transaction_under_autocommit(self) -> None:
        immediate = self.transaction_mode == "IMMEDIATE"  # type: ignore[attr-defined]
        if immediate and not self.is_in_memory_db():
            # Bounded like SQLite's own wait: past it, SQLite's busy handler decides (and may say "locked").
            timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
            self._holds_write_lock = _write_lock.acquire(timeout=timeout)
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            _write_lock.release()

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._release_write_lock()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._release_write_lock()

    def _close(self) -> Any:
        try:
            if self.connection is not None and not self.is_in_memory_db():
                if self.connection.in_transaction:
                    self.connection.rollback()  # what closing would have done to it
                with _idle_lock:
                    idle = _idle.setdefault(self.settings_dict["NAME"], [])
                    if len(idle) < IDLE_CONNECTIONS:
                        idle.append(self.connection)
                        return None
            return super()._close()  # type: ignore[misc]
        finally:
            self._release_write_lock()
