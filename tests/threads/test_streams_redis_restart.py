"""Redis restarted under connected WebSocket clients: every client gets every event exactly once, in order, on the
socket it had (the clients would reconnect with their last id if the server closed it).

Everything is real and out of process: a private ``redis-server`` (so restarting it disturbs no one else), daphne
scaled out on the test's PostgreSQL database and that Redis (channels-redis), a ``celery worker`` running the job
and publishing its events, and clients speaking the WebSocket protocol through the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.typing import Origin

from aihub.access.models import Membership
from jobs.models import Job
from tests.agents.factories import AgentFactory
from tests.factories import IssuedApiToken
from tests.servers import REPO, base_env, free_port, http_json, start_daphne, stop_server
from tests.workers import shared_database_url
from threads import services
from threads.events import JOB_FINAL_EVENTS
from threads.models import Event

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

REDIS_SERVER = "/usr/bin/redis-server"
WORDS = [f"w{n}" for n in range(80)]  # the echo agent streams one per 50 ms: 4 seconds of events
CLIENTS = 4


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a free port, without persistence (a restart loses everything)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("the private redis-server did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        time.sleep(0.5)  # long enough for every client of it to notice
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the server and the worker are separate processes sharing the test database")
    if not shutil.which(REDIS_SERVER):
        if os.environ.get("CI"):
            pytest.fail(f"{REDIS_SERVER} is missing (CI is set, so this fails instead of skipping)")
        pytest.skip(f"{REDIS_SERVER} is missing")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(
    private_redis: PrivateRedis, transactional_db: None, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, PrivateRedis]]:
    """daphne and a celery worker on the test database and the private Redis; the server's base URL.

    Both are stopped before the test database is flushed (this fixture depends on it), so neither holds a lock.
    """
    env = base_env(tmp_path_factory) | {
        "DATABASE_URL": shared_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": private_redis.url,
        "CELERY_BROKER_URL": private_redis.url,
        "CELERY_EMBEDDED_WORKER": "false",
    }
    server, base = start_daphne(env)
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "aihub", "worker", "--pool", "threads", "--concurrency", "1"),
            *("--loglevel", "info"),
            *("--without-mingle", "--without-gossip", "--hostname", f"redis-restart-{os.getpid()}@localhost"),
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while " ready." not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            worker.kill()
            pytest.fail(f"the worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    yield base, private_redis
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
    stop_server(server)


@dataclass
class Client:
    """A WebSocket client that keeps every event frame it is sent and, when the socket drops, reconnects with
    the last id it has — as the contract asks of clients. It deduplicates nothing: repeats would show."""

    url: Callable[[int], str]
    origin: str
    events: list[dict[str, Any]] = field(default_factory=list)
    connects: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last_id(self) -> int:
        return int(self.events[-1]["id"]) if self.events else 0

    def finished(self) -> bool:
        return bool(self.events) and self.events[-1]["type"] in JOB_FINAL_EVENTS

    async def follow(self) -> None:
        while not self.finished():
            try:
                async with connect(self.url(self.last_id), origin=Origin(self.origin), open_timeout=5) as socket:
                    self.connects += 1
                    async for raw in socket:
                        frame = json.loads(raw)
                        if frame.get("type") == "stream.mode":
                            self.live.set()
                        elif "id" in frame:
                            self.events.append(frame)
                            if self.finished():
                                return
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException):
                pass
            await asyncio.sleep(0.2)


def test_clients_reconnecting_with_their_last_id_after_a_redis_restart_get_every_event_exactly_once(
    stack: tuple[str, PrivateRedis], membership: Membership, token_for: Callable[..., IssuedApiToken]
) -> None:
    base, private_redis = stack
    tenant = membership.tenant
    token = token_for(membership).raw
    agent = AgentFactory.create(tenant=tenant, slug="echo", config={"chunk_delay_seconds": 0.05})
    thread = services.thread_create(tenant=tenant, created_by=membership.user, title="Restart", agent_ids=[agent.pk])
    ws_base = base.replace("http://", "ws://")

    def url(last_id: int) -> str:
        return f"{ws_base}/ws/v1/{tenant.slug}/threads/{thread.pk}/?token={token}&last_event_id={last_id}"

    async def scenario() -> list[Client]:
        clients = [Client(url=url, origin=base) for _ in range(CLIENTS)]
        following = [asyncio.create_task(client.follow()) for client in clients]
        await asyncio.wait_for(asyncio.gather(*(client.live.wait() for client in clients)), timeout=20)

        status, job = await asyncio.to_thread(
            http_json,
            f"{base}/api/v1/{tenant.slug}/threads/{thread.pk}/messages/",
            body={"content": " ".join(WORDS)},
            token=token,
        )
        assert status == 202, job
        async with asyncio.timeout(20):
            while not all(len(client.events) >= 8 for client in clients):
                await asyncio.sleep(0.02)

        positions.extend(client.last_id for client in clients)
        await asyncio.to_thread(private_redis.restart)

        await asyncio.wait_for(asyncio.gather(*following), timeout=60)
        return clients

    positions: list[int] = []
    clients = asyncio.run(scenario())

    logged = list(Event.objects.filter(thread=thread).order_by("sequence").values_list("sequence", "type"))
    assert logged[-1][1] == "job.succeeded", Job.objects.get(thread=thread).error
    assert [t for _, t in logged].count("llm.chunk") == len(WORDS)
    assert max(positions) < len(logged) - len(WORDS) // 2, "Redis restarted in the middle of the job"
    for client in clients:
        assert [(e["id"], e["type"]) for e in client.events] == logged
    # The sockets outlive the outage: the server's hub (threads.fanout) re-read the database while Redis was gone
    # and joined the groups again once it was back; no socket was closed, so no client had to reconnect.
    assert all(client.connects == 1 for client in clients), [client.connects for client in clients]
