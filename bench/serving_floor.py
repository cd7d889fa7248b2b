"""The floor of bench/serving.py: a bare ASGI app on daphne doing aihub's writes for one message, no framework.

Routes (no authentication, no validation, no channel layer):

- ``POST /thread`` → the writes of creating a thread (2 statements, one transaction), ``{"id": ...}``;
- ``POST /message/{thread}`` → the writes of posting a message and running an instant job (13 statements in
  one transaction, then 28 in 7 transactions, as the query-count tests pin them for aihub), a JSON answer;
- ``POST /message/{thread}?stream=1`` → the same writes, answered as ``text/event-stream`` with as many frames as
  aihub's stream of a 50-word echo sends, each batch after the writes that stand for it.

The database is ``FLOOR_DATABASE_URL``: ``postgres://...`` (psycopg's async pool, as aihub's own pool is
psycopg's) or a SQLite path (the sqlite3 module in a thread, WAL and immediate transactions as aihub has them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

DATABASE = os.environ["FLOOR_DATABASE_URL"]
SUBMIT_STATEMENTS = 13
RUN_TRANSACTIONS = [4, 4, 4, 4, 4, 4, 4]  # 28 statements, as an instant job's run has them
WORDS = 50

Send = Callable[[dict[str, Any]], Awaitable[None]]


class SqliteWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()
        with self._connection() as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS floor_thread (id TEXT PRIMARY KEY, title TEXT)")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS floor_row (id INTEGER PRIMARY KEY AUTOINCREMENT, thread TEXT, body TEXT)"
            )

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=20, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self.local.connection = connection
        return connection

    def _transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        for sql, params in statements:
            connection.execute(sql, params)
        connection.execute("COMMIT")

    async def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        await asyncio.to_thread(self._transaction, statements)


class PostgresWriter:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: Any = None

    async def _pool(self) -> Any:
        if self.pool is None:
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(self.url, min_size=1, max_size=20, open=False)
            await pool.open()
            async with pool.connection() as connection:
                await connection.execute("CREATE TABLE IF NOT EXISTS floor_thread (id TEXT PRIMARY KEY, title TEXT)")
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS floor_row (id BIGSERIAL PRIMARY KEY, thread TEXT, body TEXT)"
                )
            self.pool = pool
        return self.pool

    async def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        pool = await self._pool()
        async with pool.connection() as connection, connection.transaction():
            for sql, params in statements:
                await connection.execute(sql.replace("?", "%s"), params)


writer: Any = PostgresWriter(DATABASE) if DATABASE.startswith("postgres") else SqliteWriter(DATABASE)


def rows(thread: str, count: int) -> list[tuple[str, tuple[Any, ...]]]:
    return [("INSERT INTO floor_row (thread, body) VALUES (?, ?)", (thread, '{"delta": " word"}'))] * count


async def create_thread() -> str:
    thread = str(uuid.uuid4())
    await writer.transaction(
        [("INSERT INTO floor_thread (id, title) VALUES (?, ?)", (thread, "")), *rows(thread, 1)],
    )
    return thread


async def answer(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def frame(event_id: int, event_type: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {event_type}\ndata: {json.dumps(data)}\n\n".encode()


async def post_message(send: Send, thread: str, *, stream: bool) -> None:
    await writer.transaction(rows(thread, SUBMIT_STATEMENTS))
    if stream:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": frame(1, "job.queued", {}), "more_body": True})
    event_id, words_sent = 1, 0
    for index, statements in enumerate(RUN_TRANSACTIONS):
        await writer.transaction(rows(thread, statements))
        if not stream:
            continue
        batch = b""
        # The chunks go out in the middle transactions, the reply and the final event with the last one.
        share = WORDS // (len(RUN_TRANSACTIONS) - 2) + 1 if 0 < index < len(RUN_TRANSACTIONS) - 1 else 0
        for _ in range(min(share, WORDS - words_sent)):
            event_id += 1
            words_sent += 1
            batch += frame(event_id, "llm.chunk", {"delta": " word"})
        if index == len(RUN_TRANSACTIONS) - 1:
            batch += frame(event_id + 1, "message.created", {}) + frame(event_id + 2, "job.succeeded", {})
        if batch:
            await send({"type": "http.response.body", "body": batch, "more_body": True})
    if stream:
        await send({"type": "http.response.body", "body": b""})
    else:
        await answer(send, 200, {"status": "succeeded", "output": {"content": [{"type": "text", "text": "word"}]}})


async def application(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path == "/thread":
        await answer(send, 201, {"id": await create_thread()})
    elif path.startswith("/message/"):
        await post_message(send, path.removeprefix("/message/"), stream=b"stream=1" in scope["query_string"])
    else:
        await answer(send, 404, {"detail": "Nothing is here."})
