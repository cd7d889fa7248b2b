"""The WebSocket streams: who may connect, what they receive (each event once, in order), what they may send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from agents.models import Agent
from aihub.access.models import Membership
from aihub.routing import websocket_urlpatterns
from jobs import runner
from jobs import services as job_services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import IssuedApiToken, MembershipFactory
from tests.threads.factories import FileFactory, ThreadFactory
from threads import services
from threads.consumers import (
    CLOSE_NOT_FOUND,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHENTICATED,
    MAX_BAD_FRAMES,
)
from threads.events import NewEvent
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)

# The stack of aihub.asgi without importing it: that module starts the embedded Celery worker.
APPLICATION = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
ORIGIN = (b"origin", b"http://testserver")

Frame = dict[str, Any]


def run(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def socket(path: str, *, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(APPLICATION, path, headers=headers if headers is not None else [ORIGIN])


def thread_path(thread: Thread, query: str = "") -> str:
    return f"/ws/v1/{thread.tenant.slug}/threads/{thread.pk}/" + (f"?{query}" if query else "")


async def opened(communicator: WebsocketCommunicator) -> WebsocketCommunicator:
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive(communicator: WebsocketCommunicator, count: int, timeout: float = 5) -> list[Frame]:
    return [await communicator.receive_json_from(timeout=timeout) for _ in range(count)]


async def receive_until(communicator: WebsocketCommunicator, done: Callable[[Frame], bool]) -> list[Frame]:
    frames: list[Frame] = []
    while not frames or not done(frames[-1]):
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


async def close_code(communicator: WebsocketCommunicator, timeout: float = 5) -> int:
    output = await communicator.receive_output(timeout=timeout)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


def ids(frames: list[Frame]) -> list[Any]:
    return [frame.get("id", frame["type"]) for frame in frames]


@database_sync_to_async
def append(thread: Thread, count: int) -> None:
    services.events_append(thread=thread, events=[NewEvent("thought", {"n": n}) for n in range(count)])


@database_sync_to_async
def work_off(job_id: str) -> None:
    """What a worker does with the job: claim it, run it to the end."""
    job = job_services.job_claim(job_id=job_id, worker="test")  # type: ignore[arg-type]
    assert job is not None
    runner.execute(job)


@database_sync_to_async
def status_of(job_id: str) -> str:
    return str(Job.objects.get(pk=job_id).status)


@pytest.fixture
def token(membership: Membership, token_for: Callable[..., IssuedApiToken]) -> str:
    return token_for(membership).raw


@pytest.fixture
def agent(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo-bot")


@pytest.fixture
def thread(membership: Membership, agent: Agent) -> Thread:
    """The member's thread with the echo agent, three events in its log."""
    thread = services.thread_create(
        tenant=membership.tenant, created_by=membership.user, title="Mine", agent_ids=[agent.pk]
    )
    services.events_append(thread=thread, events=[NewEvent("thought", {"n": n}) for n in range(3)])
    return thread


# --- Connecting ----------------------------------------------------------------------------------------------


def test_a_token_in_the_query_replays_after_the_last_event_id_then_goes_live_each_event_once(
    thread: Thread, token: str
) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=1")))
        replayed = await receive(ws, 3)
        await append(thread, 2)
        live = await receive(ws, 2)
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()
        return replayed + live

    frames = run(scenario)

    assert ids(frames) == [2, 3, "stream.mode", 4, 5]
    assert frames[2] == {"type": "stream.mode", "thread": str(thread.pk), "data": {"mode": "live"}}
    assert set(frames[0]) == {"id", "type", "thread", "job", "agent", "created_at", "data"}


def test_without_a_last_event_id_the_whole_log_is_replayed(thread: Thread, token: str) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}")))
        frames = await receive(ws, 4)
        await ws.disconnect()
        return frames

    assert ids(run(scenario)) == [1, 2, 3, "stream.mode"]


def test_a_first_frame_with_the_token_authenticates(thread: Thread, token: str) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, "last_event_id=3")))
        await ws.send_json_to({"type": "auth", "token": token})
        frames = await receive(ws, 1)
        await ws.disconnect()
        return frames

    assert ids(run(scenario)) == ["stream.mode"]


# A client that reconnects with its last id in a subscribe frame, as the reconnecting client did: the
# socket starts streaming at connect (the whole log, for want of a last_event_id in the URL), then the frame comes.


def frames_after_a_subscribe_frame(
    thread: Thread, query: str, *, auth_token: str | None, live_events: int
) -> list[Frame]:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, query)))
        if auth_token is not None:
            await ws.send_json_to({"type": "auth", "token": auth_token})
        await ws.send_json_to({"type": "subscribe", "last_event_id": 2})
        frames = await receive_until(ws, lambda frame: frame["type"] == "stream.mode")
        await append(thread, live_events)
        frames += await receive(ws, live_events)
        assert await ws.receive_nothing(timeout=0.3), "an event came twice"
        await ws.disconnect()
        return frames

    return list(run(scenario))


def assert_each_event_once_in_order(frames: list[Frame], *, last: int) -> None:
    sent = [frame["id"] for frame in frames if "id" in frame]
    assert sent == sorted(set(sent)), f"repeated or out of order: {sent}"
    assert sent[-1] == last


@pytest.mark.parametrize("credential", ["token in the URL", "auth frame"])
def test_a_subscribe_frame_on_a_streaming_socket_never_sends_an_event_twice(
    thread: Thread, token: str, credential: str
) -> None:
    query = f"token={token}" if credential == "token in the URL" else ""
    frames = frames_after_a_subscribe_frame(thread, query, auth_token=None if query else token, live_events=2)

    assert_each_event_once_in_order(frames, last=5)
    assert [frame["type"] for frame in frames].count("stream.mode") == 1


@pytest.mark.parametrize("credential", ["token in the URL", "auth frame"])
def test_with_manual_subscribe_the_socket_waits_for_the_clients_starting_point(
    thread: Thread, token: str, credential: str
) -> None:
    query = f"token={token}&subscribe=manual" if credential == "token in the URL" else "subscribe=manual"
    auth_token = None if credential == "token in the URL" else token
    frames = frames_after_a_subscribe_frame(thread, query, auth_token=auth_token, live_events=2)

    assert ids(frames) == [3, "stream.mode", 4, 5]


def test_the_session_cookie_of_a_logged_in_user_authenticates(thread: Thread, membership: Membership) -> None:
    browser = Client()
    browser.force_login(membership.user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def scenario() -> list[Frame]:
        ws = await opened(
            socket(thread_path(thread, "last_event_id=3"), headers=[ORIGIN, (b"cookie", cookie.encode())])
        )
        frames = await receive(ws, 1)
        await ws.disconnect()
        return frames

    assert ids(run(scenario)) == ["stream.mode"]


def test_no_credentials_in_time_closes_with_4401(thread: Thread, settings: Any) -> None:
    settings.AIHUB = {**settings.AIHUB, "WS_AUTH_TIMEOUT_SECONDS": 0.2}

    async def scenario() -> int:
        return await close_code(await opened(socket(thread_path(thread))))

    assert run(scenario) == CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("how", ["query", "frame"])
def test_a_bad_token_closes_with_4401(thread: Thread, how: str) -> None:
    async def scenario() -> int:
        if how == "query":
            return await close_code(await opened(socket(thread_path(thread, "token=aih_nope_nope"))))
        ws = await opened(socket(thread_path(thread)))
        await ws.send_json_to({"type": "auth", "token": "not-a-token"})
        return await close_code(ws)

    assert run(scenario) == CLOSE_UNAUTHENTICATED


def test_a_frame_before_authentication_closes_with_4401(thread: Thread) -> None:
    async def scenario() -> int:
        ws = await opened(socket(thread_path(thread)))
        await ws.send_json_to({"type": "ping"})
        return await close_code(ws)

    assert run(scenario) == CLOSE_UNAUTHENTICATED


def test_another_tenants_thread_an_unknown_thread_and_an_unknown_tenant_are_all_4404(
    membership: Membership, token: str
) -> None:
    theirs = ThreadFactory.create()
    mine_elsewhere = f"/ws/v1/{membership.tenant.slug}/threads/{theirs.pk}/?token={token}"
    unknown_tenant = f"/ws/v1/no-such-tenant/threads/{theirs.pk}/?token={token}"

    async def scenario() -> list[int]:
        return [await close_code(await opened(socket(path))) for path in (mine_elsewhere, unknown_tenant)]

    assert run(scenario) == [CLOSE_NOT_FOUND, CLOSE_NOT_FOUND]


def test_a_colleagues_thread_in_the_same_tenant_is_4404(membership: Membership, agent: Agent, token: str) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    theirs = services.thread_create(tenant=membership.tenant, created_by=colleague.user, agent_ids=[agent.pk])

    async def scenario() -> int:
        return await close_code(await opened(socket(thread_path(theirs, f"token={token}"))))

    assert run(scenario) == CLOSE_NOT_FOUND


def test_a_page_from_a_foreign_origin_is_refused(thread: Thread, token: str) -> None:
    async def scenario() -> bool:
        ws = socket(thread_path(thread, f"token={token}"), headers=[(b"origin", b"https://evil.example")])
        connected, _ = await ws.connect()
        return bool(connected)

    assert run(scenario) is False


# --- Frames in --------------------------------------------------------------------------------------------------


def test_bad_frames_get_error_frames_and_the_connection_carries_on(thread: Thread, token: str, settings: Any) -> None:
    settings.AIHUB = {**settings.AIHUB, "WS_MAX_FRAME_BYTES": 1000}

    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_to(text_data="{not json")
        await ws.send_json_to({"type": "dance", "ref": 7})
        await ws.send_json_to({"type": "ping", "padding": "x" * 2000})
        await ws.send_json_to(["a list"])
        await ws.send_json_to({"type": "ping", "ref": "still-here"})
        answers = await receive(ws, 5)
        await append(thread, 1)
        answers += await receive(ws, 1)
        await ws.disconnect()
        return answers

    malformed, unknown, oversized, not_an_object, pong, live = run(scenario)

    assert malformed["type"] == "error"
    assert malformed["error"]["status"] == 400
    assert malformed["error"]["type"] == "urn:aihub:problem:malformed-frame"
    assert unknown["error"]["type"] == "urn:aihub:problem:unknown-frame-type"
    assert unknown["ref"] == 7
    assert oversized["error"]["status"] == 413
    assert not_an_object["error"]["status"] == 400
    assert pong == {"type": "pong", "ref": "still-here"}
    assert live["id"] == 4


def test_a_too_deep_frame_and_a_nul_in_a_message_are_error_frames_not_a_crash(thread: Thread, token: str) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_to(text_data="[" * 10_000 + "]" * 10_000)
        await ws.send_to(text_data='{"type": "ping", "ref": ' + '{"a":' * 100 + "1" + "}" * 100 + "}")
        await ws.send_json_to({"type": "message.create", "content": [{"type": "text", "text": "hi\u0000"}]})
        await ws.send_json_to({"type": "ping", "ref": "still-here"})
        answers = await receive(ws, 4)
        await ws.disconnect()
        return answers

    stack_deep, too_deep, nul, pong = run(scenario)

    for error in (stack_deep, too_deep, nul):
        assert error["type"] == "error"
        assert error["error"]["status"] == 400
        assert error["error"]["type"] == "urn:aihub:problem:malformed-frame"
    assert "nested deeper than 64 levels" in too_deep["error"]["detail"]
    assert "content[0].text" in nul["error"]["detail"]
    assert pong == {"type": "pong", "ref": "still-here"}
    assert not Job.objects.exists()


def test_a_client_stuck_sending_bad_frames_is_closed_with_4400(thread: Thread, token: str) -> None:
    async def scenario() -> int:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        for _ in range(MAX_BAD_FRAMES):
            await ws.send_to(text_data="nope")
        await receive(ws, MAX_BAD_FRAMES)
        return await close_code(ws)

    assert run(scenario) == CLOSE_PROTOCOL_ERROR


def test_a_last_event_id_ahead_of_the_log_is_an_error_frame_and_a_subscribe_recovers(
    thread: Thread, token: str
) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=99")))
        error = await receive(ws, 1)
        await ws.send_json_to({"type": "subscribe", "last_event_id": 2})
        frames = error + await receive(ws, 2)
        await ws.disconnect()
        return frames

    error, *frames = run(scenario)

    assert error["error"]["status"] == 400
    assert error["error"]["type"] == "urn:aihub:problem:last-event-id-ahead"
    assert (error["error"]["last_event_id"], error["error"]["latest_event_id"]) == (99, 3)
    assert ids(frames) == [3, "stream.mode"]


def test_message_create_starts_a_job_whose_events_stream_in_order_to_the_end(thread: Thread, token: str) -> None:
    async def scenario() -> tuple[Frame, list[Frame]]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_json_to({"type": "message.create", "content": "hello there", "ref": "m1"})
        frames = await receive_until(ws, lambda f: f["type"] == "message.accepted")
        accepted = frames.pop()
        await work_off(accepted["job"]["id"])
        frames += await receive_until(ws, lambda f: f["type"] == "job.succeeded")
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()
        return accepted, frames

    accepted, events = run(scenario)

    assert accepted["ref"] == "m1"
    assert accepted["created"] is True
    assert accepted["job"]["status"] == "queued"
    assert [e["id"] for e in events] == list(range(4, 4 + len(events)))
    types = [e["type"] for e in events]
    assert types[:4] == ["message.created", "job.queued", "job.started", "llm.started"]
    assert "".join(e["data"]["delta"] for e in events if e["type"] == "llm.chunk") == "hello there"
    assert types[-1] == "job.succeeded"


def test_message_create_is_checked_like_the_rest_route(thread: Thread, token: str) -> None:
    AgentFactory.create(slug="elsewhere")  # an agent of another tenant

    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_json_to({"type": "message.create", "content": "hi", "agent": "elsewhere"})
        await ws.send_json_to({"type": "message.create", "content": "", "surprise": 1})
        answers = await receive(ws, 2)
        await ws.disconnect()
        return answers

    not_found, invalid = run(scenario)

    assert not_found["error"]["status"] == 404
    assert invalid["error"]["status"] == 400
    assert {error["field"] for error in invalid["error"]["errors"]} >= {"surprise"}


def test_message_create_takes_attachments_like_the_rest_route(
    thread: Thread, token: str, membership: Membership, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    mine = FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, name="notes.txt")
    theirs = FileFactory.create(tenant=membership.tenant)

    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await ws.send_json_to({"type": "message.create", "content": "x", "attachments": [{"file": str(theirs.pk)}]})
        refused = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.send_json_to({"type": "message.create", "content": "see", "attachments": [{"file": str(mine.pk)}]})
        accepted = await receive_until(ws, lambda f: f["type"] == "message.accepted")
        await ws.disconnect()
        return [refused[-1], accepted[-1]]

    refused, accepted = run(scenario)

    assert refused["error"]["status"] == 400
    assert [error["field"] for error in refused["error"]["errors"]] == ["attachments[0].file"]
    job = Job.objects.get(pk=accepted["job"]["id"])
    assert job.input["content"][-1] == {
        "type": "file",
        "file_id": str(mine.pk),
        "name": "notes.txt",
        "media_type": "text/plain",
    }


def test_closing_the_socket_does_not_stop_the_job(thread: Thread, token: str) -> None:
    async def scenario() -> str:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_json_to({"type": "message.create", "content": "keep going"})
        accepted = (await receive_until(ws, lambda f: f["type"] == "message.accepted"))[-1]
        await ws.disconnect()
        return str(accepted["job"]["id"])

    job_id = run(scenario)

    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    asyncio.run(work_off(job_id))
    assert Job.objects.get(pk=job_id).status == JobStatus.SUCCEEDED


def test_job_cancel_cancels_the_threads_job_and_its_final_event_streams(thread: Thread, token: str) -> None:
    async def scenario() -> tuple[Frame, list[Frame], str]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_json_to({"type": "message.create", "content": "never mind"})
        accepted = (await receive_until(ws, lambda f: f["type"] == "message.accepted"))[-1]
        await ws.send_json_to({"type": "job.cancel", "job": accepted["job"]["id"], "mode": "immediate"})
        frames = await receive_until(ws, lambda f: f["type"] == "job.cancel.accepted")
        answer = frames.pop()
        if not any(f["type"] == "job.cancelled" for f in frames):
            frames += await receive_until(ws, lambda f: f["type"] == "job.cancelled")
        await ws.disconnect()
        return answer, frames, await status_of(accepted["job"]["id"])

    answer, frames, status = run(scenario)

    assert answer["job"]["status"] == "cancelled"
    assert frames[-1]["type"] == "job.cancelled"
    assert status == JobStatus.CANCELLED


# --- Every thread of the tenant -----------------------------------------------------------------------------------


def test_the_tenant_stream_carries_the_callers_threads_only(
    membership: Membership, thread: Thread, agent: Agent, token: str
) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    theirs = services.thread_create(tenant=membership.tenant, created_by=colleague.user, agent_ids=[agent.pk])

    async def scenario() -> list[Frame]:
        ws = await opened(socket(f"/ws/v1/{membership.tenant.slug}/events/?token={token}"))
        frames = await receive(ws, 1)
        await append(theirs, 2)
        await append(thread, 2)
        frames += await receive(ws, 2)
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()
        return frames

    marker, *events = run(scenario)

    assert marker == {"type": "stream.mode", "thread": None, "data": {"mode": "live"}}
    assert [(e["thread"], e["id"]) for e in events] == [(str(thread.pk), 4), (str(thread.pk), 5)]


def test_the_tenant_stream_replays_a_subscribed_thread_and_refuses_an_invisible_one(
    membership: Membership, thread: Thread, token: str
) -> None:
    elsewhere = ThreadFactory.create()

    async def scenario() -> list[Frame]:
        ws = await opened(socket(f"/ws/v1/{membership.tenant.slug}/events/?token={token}"))
        await receive(ws, 1)
        await ws.send_json_to({"type": "subscribe", "thread": str(elsewhere.pk), "last_event_id": 0})
        await ws.send_json_to({"type": "subscribe", "thread": str(thread.pk), "last_event_id": 1})
        frames = await receive(ws, 4)
        await append(thread, 1)
        frames += await receive(ws, 1)
        await ws.disconnect()
        return frames

    refused, *frames = run(scenario)

    assert refused["error"]["status"] == 404
    assert ids(frames) == [2, 3, "stream.mode", 4]
    assert frames[2]["thread"] == str(thread.pk)


def test_a_message_created_over_the_tenant_stream_may_start_a_new_thread(
    membership: Membership, agent: Agent, token: str
) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(f"/ws/v1/{membership.tenant.slug}/events/?token={token}"))
        await receive(ws, 1)
        await ws.send_json_to({"type": "message.create", "content": "new here", "agent": agent.slug})
        frames = await receive_until(ws, lambda f: f["type"] == "message.accepted")
        await ws.disconnect()
        return frames

    accepted = run(scenario)[-1]

    assert Thread.objects.filter(pk=accepted["job"]["thread"], created_by=membership.user).exists()


def test_pings_are_answered(thread: Thread, token: str) -> None:
    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        await ws.send_to(text_data=json.dumps({"type": "ping"}))
        frames = await receive(ws, 1)
        await ws.disconnect()
        return frames

    assert run(scenario) == [{"type": "pong"}]


# --- Rate limits ---------------------------------------------------------------------------------------------------


def test_frames_beyond_the_rate_are_dropped_with_an_error_frame_and_the_stream_carries_on(
    thread: Thread, token: str, settings: Any
) -> None:
    settings.AIHUB = {**settings.AIHUB, "WS_FRAME_RATE": "3/minute"}

    async def scenario() -> list[Frame]:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        for n in range(4):
            await ws.send_json_to({"type": "ping", "ref": n})
        answers = await receive(ws, 4)
        await append(thread, 1)
        answers += await receive(ws, 1)
        await ws.disconnect()
        return answers

    *pongs, refused, live = run(scenario)

    assert pongs == [{"type": "pong", "ref": n} for n in range(3)]
    assert refused["type"] == "error"
    assert refused["error"]["status"] == 429
    assert refused["error"]["type"] == "urn:aihub:problem:rate-limited"
    assert 1 <= refused["error"]["retry_after"] <= 60 + 60 / 3  # at worst: the next window, one slot in
    assert live["id"] == 4  # the subscription was not disturbed


def test_a_client_that_keeps_sending_past_the_frame_rate_is_closed_with_4429(
    thread: Thread, token: str, settings: Any
) -> None:
    settings.AIHUB = {**settings.AIHUB, "WS_FRAME_RATE": "2/minute"}

    async def scenario() -> int:
        ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
        await receive(ws, 1)
        for _ in range(2 + MAX_BAD_FRAMES):
            await ws.send_json_to({"type": "ping"})
        await receive(ws, 2 + MAX_BAD_FRAMES - 1)  # two pongs, then an error frame per refused frame but the last
        return await close_code(ws)

    assert run(scenario) == CLOSE_RATE_LIMITED


def test_connection_attempts_beyond_the_rate_per_address_are_closed_with_4429(
    thread: Thread, token: str, settings: Any
) -> None:
    settings.AIHUB = {**settings.AIHUB, "WS_CONNECT_RATE": "2/minute"}

    async def scenario() -> list[Any]:
        outcomes: list[Any] = []
        for _ in range(3):
            ws = await opened(socket(thread_path(thread, f"token={token}&last_event_id=3")))
            output = await ws.receive_output(timeout=5)
            outcomes.append(output.get("code") if output["type"] == "websocket.close" else "streaming")
            await ws.disconnect()
        return outcomes

    # The third is refused before its token is even looked at: guessing tokens by reconnecting is limited too.
    assert run(scenario) == ["streaming", "streaming", CLOSE_RATE_LIMITED]
