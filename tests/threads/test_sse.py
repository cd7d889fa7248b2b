"""Server-sent events from a real daphne server (embedded mode), read with a plain HTTP client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import REPO, Frame, Stream, base_env, http_json, start_daphne, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """daphne as `make run` starts it, with the demo tenant, agents and token, and a short keep-alive."""
    env = base_env(tmp_path_factory) | {"AIHUB_SSE_KEEPALIVE_SECONDS": "0.5"}
    process, base = start_daphne(env)
    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--token"], cwd=REPO, env=env, check=True, capture_output=True
    )
    subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
    token = next(word for word in seeded.stdout.decode().split() if word.startswith("aih_"))
    yield base, token
    stop_server(process)


def post_message(base: str, token: str, path: str, text: str, *, wait: bool = False) -> dict[str, Any]:
    status, job = http_json(
        f"{base}{path}{'?wait=true&timeout=15' if wait else ''}", body={"content": text}, token=token
    )
    assert status in (200, 202), job
    return job


def a_finished_thread(base: str, token: str) -> str:
    job = post_message(base, token, "/api/v1/demo/agents/echo/messages", "hello stream", wait=True)
    assert job["status"] == "succeeded", job
    return str(job["thread"])


def data(frame: Frame) -> dict[str, Any]:
    return dict(json.loads(frame["data"]))


def test_a_thread_stream_replays_the_log_then_the_live_marker_then_live_events_then_keeps_alive(
    server: tuple[str, str],
) -> None:
    base, token = server
    thread = a_finished_thread(base, token)
    stream = Stream(base, f"/api/v1/demo/threads/{thread}/stream", token=token)
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type", "").startswith("text/event-stream")
        assert stream.response.getheader("Cache-Control") == "no-cache"
        assert stream.response.getheader("X-Accel-Buffering") == "no"

        replayed = stream.until("stream.mode")
        marker = replayed.pop()
        post_message(base, token, f"/api/v1/demo/threads/{thread}/messages/", "and again")
        live = stream.until("job.succeeded")
        quiet = next(stream.frames())
    finally:
        stream.close()

    assert marker == {"event": "stream.mode", "data": '{"type":"stream.mode","data":{"mode":"live"}}'}
    frames = replayed + live
    assert [int(f["id"]) for f in frames] == list(range(1, len(frames) + 1))
    assert all(data(f)["id"] == int(f["id"]) and data(f)["type"] == f["event"] for f in frames)
    assert replayed[-1]["event"] == "job.succeeded"
    assert live[0]["event"] == "message.created"
    assert quiet == {"comment": "keep-alive"}


@pytest.mark.parametrize("how", ["header", "query"])
def test_last_event_id_resumes_after_that_event_without_repeats(server: tuple[str, str], how: str) -> None:
    base, token = server
    thread = a_finished_thread(base, token)
    path = f"/api/v1/demo/threads/{thread}/stream"
    if how == "header":
        stream = Stream(base, path, token=token, headers={"Last-Event-ID": "3"})
    else:
        stream = Stream(base, f"{path}?last_event_id=3", token=token)
    try:
        frames = stream.until("stream.mode")
    finally:
        stream.close()

    assert int(frames[0]["id"]) == 4
    assert [int(f["id"]) for f in frames[:-1]] == list(range(4, len(frames) + 3))


def test_a_job_stream_ends_after_the_jobs_final_event_and_a_resume_after_it_is_204(server: tuple[str, str]) -> None:
    base, token = server
    thread = a_finished_thread(base, token)
    job = post_message(base, token, f"/api/v1/demo/threads/{thread}/messages/", "one two three four")
    stream = Stream(base, f"/api/v1/demo/jobs/{job['id']}/stream", token=token)
    try:
        frames = [frame for frame in stream.frames() if "comment" not in frame]
    finally:
        stream.close()
    events = [f for f in frames if f["event"] != "stream.mode"]

    assert events[-1]["event"] == "job.succeeded"
    assert {data(f)["job"] for f in events} == {job["id"]}
    ids = [int(f["id"]) for f in events]
    assert ids == sorted(set(ids))

    again = Stream(base, f"/api/v1/demo/jobs/{job['id']}/stream", token=token, headers={"Last-Event-ID": str(ids[-1])})
    assert again.response.status == 204
    again.close()


def test_closing_a_stream_does_not_stop_the_job(server: tuple[str, str]) -> None:
    base, token = server
    thread = a_finished_thread(base, token)
    # The demo echo agent pauses 50 ms per word: this job runs for about a second.
    job = post_message(base, token, f"/api/v1/demo/threads/{thread}/messages/", " ".join(["word"] * 20))
    stream = Stream(base, f"/api/v1/demo/jobs/{job['id']}/stream", token=token)
    next(stream.frames())
    stream.close()

    deadline = time.monotonic() + 15
    while True:
        _, current = http_json(f"{base}/api/v1/demo/jobs/{job['id']}/", token=token)
        if current["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert current["status"] == "succeeded"


def test_errors_before_the_stream_are_problem_details(server: tuple[str, str]) -> None:
    base, token = server
    thread = a_finished_thread(base, token)
    cases = {
        "no credentials": (f"/api/v1/demo/threads/{thread}/stream", "", {}, 401),
        "a bad token": (f"/api/v1/demo/threads/{thread}/stream", "aih_nope_nope", {}, 401),
        "an unknown thread": (f"/api/v1/demo/threads/{uuid.uuid4()}/stream", token, {}, 404),
        "an unknown job": (f"/api/v1/demo/jobs/{uuid.uuid4()}/stream", token, {}, 404),
        "an id ahead of the log": (f"/api/v1/demo/threads/{thread}/stream", token, {"Last-Event-ID": "9999"}, 400),
    }
    for name, (path, credential, headers, status) in cases.items():
        stream = Stream(base, path, token=credential, headers=headers)
        body = json.loads(stream.response.read())
        stream.close()
        assert (name, stream.response.status) == (name, status)
        assert stream.response.getheader("Content-Type") == "application/problem+json"
        assert body["status"] == status


# --- ?stream=true on the message-posting routes, and cancel_on_disconnect ---------------------------------------


def final_status(base: str, token: str, job_id: str) -> str:
    """The job's status once it has ended (waiting up to 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        _, job = http_json(f"{base}/api/v1/demo/jobs/{job_id}/", token=token)
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return str(job["status"])
        time.sleep(0.1)


def a_slow_echo_agent(base: str, token: str) -> str:
    """An echo agent that pauses 0.1 s per word, so a 30-word answer runs for about three seconds."""
    slug = f"slow-echo-{uuid.uuid4().hex[:8]}"
    body = {"slug": slug, "name": "Slow echo", "class_name": "echo", "config": {"chunk_delay_seconds": 0.1}}
    status, agent = http_json(f"{base}/api/v1/demo/agents/", body=body, token=token)
    assert status == 201, agent
    return slug


@pytest.mark.parametrize("route", ["agents", "threads"])
def test_posting_with_stream_true_answers_with_the_jobs_events_from_its_message_to_its_end(
    server: tuple[str, str], route: str
) -> None:
    base, token = server
    if route == "agents":
        path = "/api/v1/demo/agents/echo/messages?stream=true"
    else:
        path = f"/api/v1/demo/threads/{a_finished_thread(base, token)}/messages/?stream=true"
    stream = Stream(base, path, token=token, body={"content": "stream me please"})
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type", "").startswith("text/event-stream")
        frames = [frame for frame in stream.frames() if "comment" not in frame]
    finally:
        stream.close()
    events = [f for f in frames if f["event"] != "stream.mode"]

    assert events[0]["event"] == "message.created"
    assert data(events[0])["data"]["role"] == "user"
    assert events[1]["event"] == "job.queued"
    assert "llm.chunk" in [f["event"] for f in events]
    assert events[-1]["event"] == "job.succeeded"
    # The caller's message is stored before its job exists; everything after it is that job's.
    assert data(events[0])["job"] is None
    assert len({data(f)["job"] for f in events[1:]}) == 1
    ids = [int(f["id"]) for f in events]
    assert ids == sorted(set(ids))


def test_stream_together_with_wait_is_a_400_problem_and_starts_no_job(server: tuple[str, str]) -> None:
    base, token = server
    thread = a_finished_thread(base, token)
    _, before = http_json(f"{base}/api/v1/demo/threads/{thread}/events/", token=token)
    stream = Stream(
        base,
        f"/api/v1/demo/threads/{thread}/messages/?stream=true&wait=true",
        token=token,
        body={"content": "not both"},
    )
    body = json.loads(stream.response.read())
    stream.close()
    _, after = http_json(f"{base}/api/v1/demo/threads/{thread}/events/", token=token)

    assert stream.response.status == 400
    assert stream.response.getheader("Content-Type") == "application/problem+json"
    assert "stream" in json.dumps(body)
    assert after["next_after"] == before["next_after"]


@pytest.mark.parametrize(("flag", "ends"), [("&cancel_on_disconnect=true", "cancelled"), ("", "succeeded")])
def test_a_client_leaving_after_the_first_chunk_cancels_the_job_only_with_cancel_on_disconnect(
    server: tuple[str, str], flag: str, ends: str
) -> None:
    base, token = server
    slug = a_slow_echo_agent(base, token)
    stream = Stream(
        base,
        f"/api/v1/demo/agents/{slug}/messages?stream=true{flag}",
        token=token,
        body={"content": " ".join(["word"] * 30)},
    )
    try:
        assert stream.response.status == 200
        first_chunk = stream.until("llm.chunk")[-1]
    finally:
        stream.close()

    assert final_status(base, token, data(first_chunk)["job"]) == ends


def test_a_job_stream_with_cancel_on_disconnect_cancels_the_job_when_the_client_leaves(
    server: tuple[str, str],
) -> None:
    base, token = server
    slug = a_slow_echo_agent(base, token)
    job = post_message(base, token, f"/api/v1/demo/agents/{slug}/messages", " ".join(["word"] * 30))
    stream = Stream(base, f"/api/v1/demo/jobs/{job['id']}/stream?cancel_on_disconnect=true", token=token)
    try:
        stream.until("llm.chunk")
    finally:
        stream.close()

    assert final_status(base, token, job["id"]) == "cancelled"
