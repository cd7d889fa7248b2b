"""Live-stream fan-out: N WebSocket (and SSE) clients on one thread of a real daphne, next to the bare layer.

Run from the repository root: ``python bench/streams.py [--clients 100] [--sse-clients 100] [--words 300]``. For
each setup it starts a real server, connects N WebSocket clients (the ``websockets`` library) and M SSE clients
(plain HTTP/1.1 sockets) to one thread, runs one echo-agent job that streams ``--words`` ``llm.chunk`` events
into it, and measures in the same run, per transport:

- aihub: from an event's ``created_at`` (the runner appends it; same machine, same clock) to each client
  receiving its frame — p50/p95/p99 over every (event, client) pair, events/s delivered (all clients together),
  whether every client got every event exactly once and in order, and the server's memory per connection (its
  resident set size before and after the clients connected, divided by N);
- baseline: the same number of messages, at the same pace, through the bare channel layer (``group_send`` to a
  group of N + M channels, each ``receive``-d) in this process — the floor under any Channels-based fan-out.

Setups: **embedded** (`make run`: SQLite, in-memory layer, in-process worker; the baseline is the in-memory
layer) and, when PostgreSQL and Redis answer (``BENCH_POSTGRES`` with pgvector, default ``postgres://postgres@127.0.0.1:54329``,
and ``BENCH_REDIS_URL``, default db 9), **scaled out** (PostgreSQL, channels-redis, one ``celery worker``; the
baseline is channels-redis on the same Redis). ``--skip-scaled-out`` runs only the first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    DEFAULT_POSTGRES,
    Server,
    http_json,
    percentile,
    reachable,
    recreate_database,
    rss_bytes,
    serve,
    server_env,
)

SERVER = DEFAULT_POSTGRES  # with pgvector, which the knowledge app's migrations need
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
DATABASE = "aihub_bench_streams"
CHUNK_DELAY = 0.005  # the echo agent's pause per word: 200 events a second into the thread
FINAL = {"job.succeeded", "job.failed", "job.cancelled", "job.expired"}


@dataclass
class Client:
    """A WebSocket client."""

    socket: ClientConnection
    received: list[tuple[int, float, float]] = field(default_factory=list)  # (id, created, received)

    async def read_until_final(self) -> None:
        while True:
            frame = json.loads(await self.socket.recv())
            if "id" in frame and record(self.received, frame):
                return

    async def close(self) -> None:
        await self.socket.close()


def record(received: list[tuple[int, float, float]], event: dict[str, Any]) -> bool:
    """Note an event's arrival; True for the job's final event."""
    now = time.time()
    created = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")).timestamp()
    received.append((event["id"], created, now))
    return event["type"] in FINAL


@dataclass
class SseClient:
    """An SSE client on a plain socket (HTTP/1.1, chunked or not): no library buffers or reconnects for it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunked: bool
    buffer: str = ""
    received: list[tuple[int, float, float]] = field(default_factory=list)

    @classmethod
    async def open(cls, base: str, path: str, token: str) -> SseClient:
        parts = urlsplit(base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        status = (await reader.readline()).decode()
        assert " 200 " in status, status
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        client = cls(reader, writer, chunked=headers.get("transfer-encoding") == "chunked")
        while (await client.next_frame()).get("event") != "stream.mode":
            pass
        return client

    async def _read(self) -> str:
        if not self.chunked:
            return (await self.reader.read(65536)).decode()
        size = int((await self.reader.readline()).strip(), 16)
        return (await self.reader.readexactly(size + 2))[:-2].decode()

    async def next_frame(self) -> dict[str, str]:
        while "\n\n" not in self.buffer:
            data = await self._read()
            if not data:
                raise ConnectionError("the stream ended")
            self.buffer += data
        raw, self.buffer = self.buffer.split("\n\n", 1)
        frame: dict[str, str] = {}
        for line in raw.split("\n"):
            if line and not line.startswith(":"):  # a comment (keep-alive) is no field
                name, _, value = line.partition(":")
                frame[name] = frame.get(name, "") + value.removeprefix(" ")
        return frame

    async def read_until_final(self) -> None:
        while True:
            frame = await self.next_frame()
            if "id" in frame and record(self.received, json.loads(frame["data"])):
                return

    async def close(self) -> None:
        self.writer.close()


@dataclass
class Figures:
    latencies: list[float]
    per_second: float
    complete: bool = True
    bytes_per_connection: float = 0.0


async def measure_aihub(server: Server, clients: int, sse_clients: int, words: int) -> dict[str, Figures]:
    status, agent = http_json(
        f"{server.base}/api/v1/demo/agents/",
        body={
            "slug": f"bench-echo-{uuid.uuid4().hex[:8]}",
            "name": "Bench echo",
            "class_name": "echo",
            "config": {"chunk_delay_seconds": CHUNK_DELAY},
        },
        token=server.token,
    )
    assert status == 201, agent
    status, thread = http_json(f"{server.base}/api/v1/demo/threads/", body={"title": "bench"}, token=server.token)
    assert status == 201, thread
    url = f"{server.base.replace('http://', 'ws://')}/ws/v1/demo/threads/{thread['id']}/?token={server.token}"
    sse_path = f"/api/v1/demo/threads/{thread['id']}/stream"

    before = rss_bytes(server.pid)
    gate = asyncio.Semaphore(50)

    async def open_websocket() -> Client:
        async with gate:
            ws = await connect(url, origin=Origin(server.base), open_timeout=30, max_queue=None)
            while json.loads(await ws.recv())["type"] != "stream.mode":
                pass
            return Client(ws)

    async def open_sse() -> SseClient:
        async with gate:
            return await SseClient.open(server.base, sse_path, server.token)

    websockets = list(await asyncio.gather(*(open_websocket() for _ in range(clients))))
    streams = list(await asyncio.gather(*(open_sse() for _ in range(sse_clients))))
    await asyncio.sleep(1)  # let the server settle before reading its memory
    per_connection = (rss_bytes(server.pid) - before) / max(1, clients + sse_clients)
    everyone: list[Client | SseClient] = [*websockets, *streams]
    reading = [asyncio.create_task(client.read_until_final()) for client in everyone]
    started = time.time()
    status, job = await asyncio.to_thread(
        http_json,
        f"{server.base}/api/v1/demo/agents/{agent['slug']}/messages",
        body={"content": " ".join(f"w{n}" for n in range(words)), "thread": thread["id"]},
        token=server.token,
    )
    assert status == 202, job
    await asyncio.wait_for(asyncio.gather(*reading), timeout=300)
    await asyncio.gather(*(client.close() for client in everyone))

    status, log = http_json(f"{server.base}/api/v1/demo/threads/{thread['id']}/events/?limit=1000", token=server.token)
    expected = [event["id"] for event in log["items"]]
    figures = {}
    for name, group in (("WebSocket", websockets), ("SSE", streams)):
        if not group:
            continue
        pairs = [r for client in group for r in client.received]
        figures[name] = Figures(
            latencies=[(received - created) * 1000 for _, created, received in pairs],
            per_second=len(pairs) / (max(r[2] for r in pairs) - started),
            complete=all([r[0] for r in client.received] == expected for client in group),
            bytes_per_connection=per_connection,
        )
    return figures


async def measure_layer(layer: Any, clients: int, messages: int) -> Figures:
    channels = [await layer.new_channel() for _ in range(clients)]
    for channel in channels:
        await layer.group_add("bench.streams", channel)
    latencies: list[float] = []

    async def receive_all(channel: str) -> float:
        for _ in range(messages):
            message = await layer.receive(channel)
            latencies.append((time.time() - message["sent"]) * 1000)
        return time.time()

    receiving = [asyncio.create_task(receive_all(channel)) for channel in channels]
    started = time.time()
    for index in range(messages):
        await layer.group_send("bench.streams", {"type": "bench.event", "sent": time.time(), "index": index})
        await asyncio.sleep(CHUNK_DELAY)
    ends = await asyncio.wait_for(asyncio.gather(*receiving), timeout=300)
    for channel in channels:
        await layer.group_discard("bench.streams", channel)
    return Figures(latencies=latencies, per_second=len(latencies) / (max(ends) - started))


async def measure_redis_pubsub(clients: int, messages: int) -> Figures:
    """The floor under any Redis-backed stream: a raw PUBLISH to ``clients`` subscribers, one connection each."""
    import redis.asyncio as aioredis

    connections = [aioredis.Redis.from_url(REDIS_URL) for _ in range(clients + 1)]
    publisher, subscribers = connections[0], [connection.pubsub() for connection in connections[1:]]
    for pubsub in subscribers:
        await pubsub.subscribe("bench.streams.raw")
    latencies: list[float] = []

    async def receive_all(pubsub: Any) -> float:
        received = 0
        while received < messages:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is not None:
                latencies.append((time.time() - json.loads(message["data"])["sent"]) * 1000)
                received += 1
        return time.time()

    receiving = [asyncio.create_task(receive_all(pubsub)) for pubsub in subscribers]
    started = time.time()
    for index in range(messages):
        await publisher.publish("bench.streams.raw", json.dumps({"sent": time.time(), "index": index}))
        await asyncio.sleep(CHUNK_DELAY)
    ends = await asyncio.wait_for(asyncio.gather(*receiving), timeout=300)
    for pubsub in subscribers:
        await pubsub.aclose()
    for connection in connections:
        await connection.aclose()
    return Figures(latencies=latencies, per_second=len(latencies) / (max(ends) - started))


def report(
    name: str,
    clients: int,
    sse_clients: int,
    aihub: dict[str, Figures],
    baseline: Figures,
    layer: str,
    raw_redis: Figures | None = None,
) -> None:
    def row(label: str, figures: Figures) -> str:
        p50, p95, p99 = (percentile(figures.latencies, f) for f in (0.5, 0.95, 0.99))
        return f"| {label} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {figures.per_second:,.0f} |"

    print(f"\n### {name}: {clients} WebSocket and {sse_clients} SSE clients on one thread\n")
    print("| path | p50 ms | p95 ms | p99 ms | events/s delivered |")
    print("|---|---:|---:|---:|---:|")
    print(row(f"baseline: {layer} group_send → receive", baseline))
    if raw_redis is not None:
        print(row("baseline: raw Redis PUBLISH → subscriber", raw_redis))
    for transport, figures in aihub.items():
        print(row(f"aihub: event appended → {transport} frame received", figures))
    b50, b95 = statistics.median(baseline.latencies), percentile(baseline.latencies, 0.95)
    print()
    for transport, figures in aihub.items():
        a50, a95 = statistics.median(figures.latencies), percentile(figures.latencies, 0.95)
        print(
            f"{transport} / baseline: p50 {a50 / max(b50, 1e-6):.1f}x, p95 {a95 / max(b95, 1e-6):.1f}x, events/s "
            f"{figures.per_second / max(baseline.per_second, 1e-6):.2f}x; every client got every event exactly once, "
            f"in order: {'yes' if figures.complete else 'NO'}"
        )
        if raw_redis is not None:
            r50 = statistics.median(raw_redis.latencies)
            print(f"{transport} / raw Redis publish→subscribe: p50 {a50 / max(r50, 1e-6):.1f}x")
    some = next(iter(aihub.values()))
    print(f"server memory per connection: {some.bytes_per_connection / 1024:.0f} KiB")


def run_embedded(clients: int, sse_clients: int, words: int) -> None:
    from channels.layers import InMemoryChannelLayer

    with (
        tempfile.TemporaryDirectory(prefix="aihub-bench-streams-") as var_dir,
        serve(server_env(var_dir), worker=False) as server,
    ):
        aihub = asyncio.run(measure_aihub(server, clients, sse_clients, words))
    layer = InMemoryChannelLayer(capacity=10_000)
    baseline = asyncio.run(measure_layer(layer, clients + sse_clients, words))
    report("embedded (SQLite, in-memory layer, in-process worker)", clients, sse_clients, aihub, baseline, "in-memory")


def run_scaled_out(clients: int, sse_clients: int, words: int) -> None:
    from channels_redis.core import RedisChannelLayer

    recreate_database(SERVER, DATABASE)
    try:
        with tempfile.TemporaryDirectory(prefix="aihub-bench-streams-") as var_dir:
            env = server_env(var_dir, database_url=f"{SERVER}/{DATABASE}", redis_url=REDIS_URL)
            with serve(env, worker=True, worker_name="benchstreams@%h") as server:
                aihub = asyncio.run(measure_aihub(server, clients, sse_clients, words))
        layer = RedisChannelLayer(hosts=[REDIS_URL], capacity=10_000)
        baseline = asyncio.run(measure_layer(layer, clients + sse_clients, words))
        raw_redis = asyncio.run(measure_redis_pubsub(clients + sse_clients, words))
        name = "scaled out (PostgreSQL, channels-redis, a celery worker)"
        report(name, clients, sse_clients, aihub, baseline, "channels-redis", raw_redis)
    finally:
        recreate_database(SERVER, DATABASE, drop_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="WebSocket clients on the thread (default 100)")
    parser.add_argument("--sse-clients", type=int, default=0, help="SSE clients on the same thread (default 0)")
    parser.add_argument("--words", type=int, default=300, help="llm.chunk events the job streams (default 300)")
    parser.add_argument("--skip-scaled-out", action="store_true", help="only the embedded setup")
    parser.add_argument("--skip-embedded", action="store_true", help="only the scaled-out setup")
    args = parser.parse_args()
    print(f"one job streaming {args.words} chunks at {1 / CHUNK_DELAY:.0f}/s")
    if not args.skip_embedded:
        run_embedded(args.clients, args.sse_clients, args.words)
    if args.skip_scaled_out:
        return
    if reachable(f"{SERVER}/postgres", 5432) and reachable(REDIS_URL, 6379):
        run_scaled_out(args.clients, args.sse_clients, args.words)
    else:
        print(f"\nscaled out: skipped (PostgreSQL at {SERVER} or Redis at {REDIS_URL} does not answer)")


if __name__ == "__main__":
    main()
