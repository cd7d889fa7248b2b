"""The AG-UI door: the event translation, and runs over a real daphne read with ``ag_ui.core`` types."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from ag_ui.core import (
    BaseEvent,
    Event,
    EventType,
    RunAgentInput,
    RunFinishedEvent,
    ToolMessage,
    UserMessage,
)
from pydantic import TypeAdapter

from aihub.interop.agui import RunTranslator, pending_answer, state_patch
from tests.servers import REPO, Stream, base_env, http_json, seed_demo_token, start_daphne, stop_server

pytestmark = pytest.mark.timeout(120)

EVENTS: TypeAdapter[Any] = TypeAdapter(Event)

PAIRS = {
    EventType.TEXT_MESSAGE_START: (EventType.TEXT_MESSAGE_END, "message_id"),
    EventType.TOOL_CALL_START: (EventType.TOOL_CALL_END, "tool_call_id"),
    EventType.STEP_STARTED: (EventType.STEP_FINISHED, "step_name"),
    EventType.REASONING_START: (EventType.REASONING_END, "message_id"),
}


def assert_well_formed(events: list[BaseEvent]) -> None:
    """RUN_STARTED first, RUN_FINISHED or RUN_ERROR last and nowhere else, every START closed by its END."""
    types = [event.type for event in events]
    assert types[0] == EventType.RUN_STARTED, types
    assert types[-1] in (EventType.RUN_FINISHED, EventType.RUN_ERROR), types
    assert types.count(EventType.RUN_STARTED) == 1
    assert sum(t in (EventType.RUN_FINISHED, EventType.RUN_ERROR) for t in types) == 1
    open_: set[tuple[EventType, str]] = set()
    ends = {end: start for start, (end, _) in PAIRS.items()}
    for event in events:
        if event.type in PAIRS:
            key = (event.type, getattr(event, PAIRS[event.type][1]))
            assert key not in open_, f"{key} started twice"
            open_.add(key)
        elif event.type in ends:
            start = ends[event.type]
            key = (start, getattr(event, PAIRS[start][1]))
            assert key in open_, f"{event.type} without its start"
            open_.remove(key)
        elif event.type == EventType.TEXT_MESSAGE_CONTENT:
            assert (EventType.TEXT_MESSAGE_START, event.message_id) in open_  # type: ignore[attr-defined]
    assert not open_, f"never closed: {open_}"


def apply_patch(state: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """RFC 6902 for the top-level paths aihub's flat state uses."""
    state = dict(state)
    for op in ops:
        op = op if isinstance(op, dict) else op.model_dump()
        key = op["path"][1:].replace("~1", "/").replace("~0", "~")
        if op["op"] == "remove":
            del state[key]
        else:
            state[key] = op["value"]
    return state


def text_of_run(events: list[BaseEvent]) -> str:
    return "".join(e.delta for e in events if e.type == EventType.TEXT_MESSAGE_CONTENT)  # type: ignore[attr-defined]


# --- The translation, event by event ---------------------------------------------------------------------------


def aihub_event(sequence: int, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": sequence, "type": kind, "thread": "t", "job": "j", "agent": "a", "data": data}


def translated(events: list[dict[str, Any]], *, state: dict[str, Any] | None = None) -> list[BaseEvent]:
    translator = RunTranslator(thread_id="thread-1", run_id="run-1", state=state or {})
    out = translator.start({"threadId": "thread-1", "runId": "run-1", "messages": []})
    for event in events:
        out += translator.translate(event, history=[{"id": "m1", "role": "assistant", "content": []}])
    return out


def test_a_streamed_reply_becomes_one_text_message_inside_its_step() -> None:
    events = translated(
        [
            aihub_event(2, "job.queued"),
            aihub_event(3, "job.started"),
            aihub_event(4, "llm.started", model="offline"),
            aihub_event(5, "llm.chunk", delta="Hello"),
            aihub_event(6, "llm.chunk", delta=" there"),
            aihub_event(7, "llm.completed", usage={"input_tokens": 3, "output_tokens": 2}),
            aihub_event(8, "message.created", id="m1", role="assistant", content=[{"type": "text", "text": "Hi"}]),
            aihub_event(9, "job.succeeded", output={"message": "m1"}, usage={}),
        ]
    )

    assert [e.type.value for e in events] == [
        "RUN_STARTED",
        "STATE_SNAPSHOT",
        "STEP_STARTED",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "STEP_FINISHED",
        "MESSAGES_SNAPSHOT",
        "RUN_FINISHED",
    ]
    assert_well_formed(events)
    assert text_of_run(events) == "Hello there"
    finished = events[-1]
    assert isinstance(finished, RunFinishedEvent) and finished.usage
    assert (finished.usage[0].input_tokens, finished.usage[0].total_tokens) == (3, 5)


def test_a_reply_that_was_not_streamed_is_sent_whole() -> None:
    reply = aihub_event(4, "message.created", id="m9", role="assistant", content=[{"type": "text", "text": "Done."}])
    events = translated([reply, aihub_event(5, "job.succeeded")])

    assert_well_formed(events)
    assert text_of_run(events) == "Done."


def test_tool_calls_pair_up_and_carry_their_result() -> None:
    events = translated(
        [
            aihub_event(4, "tool.started", id="call-1", name="calculator", arguments={"expression": "1+1"}),
            aihub_event(5, "tool.completed", id="call-1", name="calculator", output="2", is_error=False),
            aihub_event(6, "job.succeeded"),
        ]
    )

    assert_well_formed(events)
    by_type = {e.type: e for e in events}
    assert json.loads(by_type[EventType.TOOL_CALL_ARGS].delta) == {"expression": "1+1"}  # type: ignore[attr-defined]
    assert by_type[EventType.TOOL_CALL_RESULT].content == "2"  # type: ignore[attr-defined]


def test_state_updates_are_json_patches_that_apply_to_the_snapshot() -> None:
    events = translated(
        [
            aihub_event(4, "state.updated", mode="merge", state={"a": 1, "b/c": 2}),
            aihub_event(5, "state.updated", mode="replace", state={"b/c": 3}),
            aihub_event(6, "job.succeeded"),
        ],
        state={"a": 0, "gone": True},
    )

    state = events[1].snapshot  # type: ignore[attr-defined]
    for event in events:
        if event.type == EventType.STATE_DELTA:
            state = apply_patch(state, event.delta)  # type: ignore[attr-defined]
    assert state == {"b/c": 3}
    assert state_patch({"x": 1}, {"x": 1}) == []


def test_a_client_tool_call_ends_the_run_with_an_interrupt() -> None:
    call = {"id": "call-7", "name": "confirm_order", "arguments": {"item": "tea"}}
    events = translated(
        [
            aihub_event(4, "llm.started"),
            aihub_event(5, "llm.completed"),
            aihub_event(6, "job.requires_action", pending_action={"type": "client_tool", "tool_call": call}),
            aihub_event(7, "job.succeeded"),  # after the run: not part of it
        ]
    )

    assert_well_formed(events)
    finished = events[-1]
    assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None
    assert finished.outcome.type == "interrupt"
    assert finished.outcome.interrupts[0].tool_call_id == "call-7"
    assert [e.type for e in events].count(EventType.MESSAGES_SNAPSHOT) == 0


def test_a_failed_job_is_a_run_error_with_its_problem_details() -> None:
    problem = {"type": "urn:aihub:problem:job-failed", "title": "Job failed", "status": 502, "detail": "No model."}
    events = translated(
        [
            aihub_event(4, "llm.started"),
            aihub_event(5, "llm.chunk", delta="Hal"),
            aihub_event(6, "job.failed", error=problem),
        ]
    )

    assert_well_formed(events)
    error = events[-1]
    assert error.type == EventType.RUN_ERROR
    assert (error.message, error.code, error.metadata) == ("No model.", problem["type"], {"problem": problem})  # type: ignore[attr-defined]


def test_thoughts_become_reasoning_and_other_events_custom_ones() -> None:
    events = translated(
        [
            aihub_event(4, "thought", text="Let me see."),
            aihub_event(5, "artifact.updated", id="a1", name="note"),
            aihub_event(6, "job.cancelled"),
        ]
    )

    assert_well_formed(events)
    types = [e.type for e in events]
    assert EventType.REASONING_MESSAGE_CONTENT in types
    custom = next(e for e in events if e.type == EventType.CUSTOM)
    assert (custom.name, custom.value) == ("aihub.artifact.updated", {"id": "a1", "name": "note"})  # type: ignore[attr-defined]
    assert events[-1].outcome.type == "cancelled"  # type: ignore[attr-defined]


JOB_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
CLIENT_CALL = {"type": "client_tool", "tool_call": {"id": "call-1", "name": "pick", "arguments": {}}}


def answer_in(pending: dict[str, Any], **fields: Any) -> dict[str, Any] | None:
    messages = fields.pop("messages", [UserMessage(id="u1", content="hi")])
    run = RunAgentInput(thread_id="t", run_id="r2", messages=messages, **fields)
    return pending_answer(pending, run, job_id=JOB_ID)


def test_a_tool_message_for_the_pending_call_answers_it_with_its_output_or_error() -> None:
    assert answer_in(CLIENT_CALL, messages=[ToolMessage(id="t", tool_call_id="call-1", content="red")]) == {
        "action": "tool_output",
        "output": "red",
    }
    failed = ToolMessage(id="t", tool_call_id="call-1", content="", error="no pick")
    assert answer_in(CLIENT_CALL, messages=[failed]) == {"action": "reject", "reason": "no pick"}
    assert answer_in(CLIENT_CALL, messages=[ToolMessage(id="t", tool_call_id="other", content="x")]) is None


def test_resume_entries_answer_interrupts_by_id() -> None:
    approval = {**CLIENT_CALL, "type": "tool_approval"}
    approve = {"interruptId": "call-1", "status": "resolved", "payload": {"action": "approve"}}
    assert answer_in(approval, resume=[approve]) == {"action": "approve"}
    assert answer_in(approval, resume=[{"interruptId": "call-1", "status": "cancelled"}]) == {"action": "reject"}
    asked = {"type": "input", "prompt": "Your name?"}
    named = {"interruptId": f"job-{JOB_ID}", "status": "resolved", "payload": "Ada"}
    assert answer_in(asked, resume=[named]) == {"action": "text", "text": "Ada"}
    assert answer_in(asked, resume=[{**named, "interruptId": "job-someone-else"}]) is None


# --- Runs on a real server -------------------------------------------------------------------------------------

SETUP = """
import json
from django.contrib.auth import get_user_model
from aihub.access import services as access
from agents import services as agents
from agents.providers import DEFAULT_MODEL
from aihub.access.models import Tenant
from threads import services as threads
demo = Tenant.objects.get(slug="demo")
agents.agent_create(tenant=demo, slug="stateful", name="Stateful", class_name="tools", model=DEFAULT_MODEL,
                    tools=["set_state"])
rival = get_user_model().objects.create_user(username="rival", password="x")
tenant = access.tenant_create(slug="rival", name="Rival", owner=rival)
_token, secret = access.api_token_create(user=rival, name="rival", tenant=tenant)
thread = threads.thread_create(tenant=tenant, created_by=rival, title="theirs")
print(json.dumps({"rival_thread": str(thread.pk)}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The demo server, with a state-setting agent, and another tenant that has a thread of its own."""
    env = base_env(tmp_path_factory)
    process, base = start_daphne(env)
    try:
        token = seed_demo_token(env)
        subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
        made = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SETUP], cwd=REPO, env=env, check=True, capture_output=True
        )
        yield {"base": base, "token": token, **json.loads(made.stdout.decode().strip().splitlines()[-1])}
    finally:
        stop_server(process)


def run_input(text: str, *, thread: str | None = None, **fields: Any) -> dict[str, Any]:
    message = UserMessage(id=f"u-{uuid.uuid4().hex[:8]}", content=text)
    body = RunAgentInput(
        thread_id=thread or f"thread-{uuid.uuid4().hex}",
        run_id=f"run-{uuid.uuid4().hex}",
        messages=fields.pop("messages", [message]),
        **fields,
    )
    return body.model_dump(by_alias=True, mode="json")


def post_run(
    server: dict[str, str], agent: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[list[BaseEvent], list[dict[str, str]]]:
    """POST the run and read the stream: the AG-UI events, and the frames they came in."""
    path = f"/ag-ui/{server.get('tenant', 'demo')}/{agent}"
    stream = Stream(server["base"], path, token=server["token"], body=body, headers=headers)
    try:
        assert stream.response.status == 200, stream.response.read()
        frames = [frame for frame in stream.frames() if "data" in frame]
    finally:
        stream.close()
    return [EVENTS.validate_json(frame["data"]) for frame in frames], frames


def thread_of(events: list[BaseEvent]) -> str:
    return events[0].metadata["aihub"]["thread"]  # type: ignore[index]


def test_the_demo_agent_runs_as_a_well_formed_stream_whose_text_is_the_stored_reply(server: dict[str, str]) -> None:
    events, _ = post_run(server, "echo", run_input("one two three"))

    assert_well_formed(events)
    assert events[-1].type == EventType.RUN_FINISHED
    status, page = http_json(
        f"{server['base']}/api/v1/demo/threads/{thread_of(events)}/messages/", token=server["token"]
    )
    assert status == 200, page
    stored = page["items"][-1]
    assert stored["role"] == "assistant"
    assert text_of_run(events) == stored["content"][0]["text"] == "one two three"
    snapshot = next(e for e in events if e.type == EventType.MESSAGES_SNAPSHOT)
    assert [m.content for m in snapshot.messages] == ["one two three", "one two three"]  # type: ignore[attr-defined]


def test_a_tool_calling_agent_streams_its_call_and_the_result(server: dict[str, str]) -> None:
    events, _ = post_run(server, "calculator", run_input("calculate 2 * (3 + 4)"))

    assert_well_formed(events)
    start = next(e for e in events if e.type == EventType.TOOL_CALL_START)
    result = next(e for e in events if e.type == EventType.TOOL_CALL_RESULT)
    assert start.tool_call_name == "calculator"  # type: ignore[attr-defined]
    assert result.tool_call_id == start.tool_call_id and result.content == "14"  # type: ignore[attr-defined]
    assert "14" in text_of_run(events)


def test_state_deltas_apply_to_the_snapshot_and_give_the_threads_state(server: dict[str, str]) -> None:
    body = run_input('use set_state {"key": "mood", "value": "happy"}', state={"color": "red"})
    events, _ = post_run(server, "stateful", body)

    assert_well_formed(events)
    state = next(e for e in events if e.type == EventType.STATE_SNAPSHOT).snapshot  # type: ignore[attr-defined]
    for event in events:
        if event.type == EventType.STATE_DELTA:
            state = apply_patch(state, event.delta)  # type: ignore[attr-defined]
    status, stored = http_json(f"{server['base']}/api/v1/demo/threads/{thread_of(events)}/state", token=server["token"])
    assert status == 200
    assert state == stored["state"] == {"color": "red", "mood": "happy"}


def test_a_frontend_tool_call_interrupts_the_run_and_the_next_run_answers_it(server: dict[str, str]) -> None:
    tool = {
        "name": "confirm_order",
        "description": "Ask the user to confirm the order.",
        "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]},
    }
    first = run_input('use confirm_order {"item": "tea"}', tools=[tool])
    events, _ = post_run(server, "calculator", first)

    assert_well_formed(events)
    call = next(e for e in events if e.type == EventType.TOOL_CALL_START)
    assert call.tool_call_name == "confirm_order"  # type: ignore[attr-defined]
    args = next(e for e in events if e.type == EventType.TOOL_CALL_ARGS)
    assert json.loads(args.delta) == {"item": "tea"}  # type: ignore[attr-defined]
    finished = events[-1]
    assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None
    assert finished.outcome.type == "interrupt"
    interrupt = finished.outcome.interrupts[0]
    assert interrupt.tool_call_id == call.tool_call_id  # type: ignore[attr-defined]
    job = events[0].metadata["aihub"]["job"]  # type: ignore[index]
    status, waiting = http_json(f"{server['base']}/api/v1/demo/jobs/{job}/", token=server["token"])
    assert waiting["status"] == "requires_action"

    answer = ToolMessage(id="t1", tool_call_id=interrupt.tool_call_id, content="confirmed")
    second = run_input("", thread=first["threadId"], messages=[*first["messages"], answer], tools=[tool])
    events, _ = post_run(server, "calculator", second)

    assert_well_formed(events)
    assert events[0].metadata["aihub"]["job"] == job  # type: ignore[index]  # the same job carried on
    assert events[-1].type == EventType.RUN_FINISHED and events[-1].outcome is None  # type: ignore[attr-defined]
    assert text_of_run(events) == "The result is confirmed."
    status, ended = http_json(f"{server['base']}/api/v1/demo/jobs/{job}/", token=server["token"])
    assert (status, ended["status"]) == (200, "succeeded")


def test_sending_the_run_again_with_last_event_id_resumes_it_exactly_once(server: dict[str, str]) -> None:
    body = run_input("alpha beta gamma delta epsilon")
    events, frames = post_run(server, "echo", body)
    ids = [int(frame["id"]) for frame in frames if "id" in frame]
    cut = ids[len(ids) // 2]
    delivered = next(i for i, frame in enumerate(frames) if frame.get("id") == str(cut)) + 1

    resumed, _ = post_run(server, "echo", body, headers={"Last-Event-ID": str(cut)})
    again, _ = post_run(server, "echo", body)  # the same run without the header: from its start, no new job

    assert [e.model_dump() for e in events[:delivered] + resumed] == [e.model_dump() for e in events]
    assert [e.model_dump() for e in again] == [e.model_dump() for e in events]
    status, page = http_json(
        f"{server['base']}/api/v1/demo/threads/{thread_of(events)}/messages/", token=server["token"]
    )
    assert (status, len(page["items"])) == (200, 2)


def test_another_tenants_thread_id_is_refused_before_the_stream(server: dict[str, str]) -> None:
    body = run_input("hello", thread=server["rival_thread"])
    stream = Stream(server["base"], "/ag-ui/demo/echo", token=server["token"], body=body)
    try:
        assert stream.response.status == 404
        assert stream.response.getheader("Content-Type") == "application/problem+json"
        assert json.loads(stream.response.read())["status"] == 404
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/ag-ui/demo/echo", {"threadId": "t"}, 400),
        ("/ag-ui/demo/no-such-agent", {"threadId": "t", "runId": "r", "messages": []}, 404),
        ("/ag-ui/demo/echo", {"threadId": "t", "runId": "r", "messages": []}, 400),
        (
            "/ag-ui/demo/echo",
            {
                "threadId": "t",
                "runId": "r",
                "messages": [
                    {
                        "id": "u",
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "image", "source": {"type": "url", "value": "https://x/a.png"}},
                        ],
                    }
                ],
            },
            400,
        ),
        (
            "/ag-ui/demo/calculator",
            {
                "threadId": "t",
                "runId": "r",
                "tools": [{"name": "calculator", "description": ""}],
                "messages": [{"id": "u", "role": "user", "content": "hi"}],
            },
            400,
        ),
    ],
)
def test_bad_input_is_a_problem_before_the_stream(
    server: dict[str, str], path: str, body: dict[str, Any], status: int
) -> None:
    stream = Stream(server["base"], path, token=server["token"], body=body)
    try:
        assert stream.response.status == status
        problem = json.loads(stream.response.read())
        assert problem["status"] == status and problem["detail"]
    finally:
        stream.close()


def test_a_run_without_credentials_is_refused(server: dict[str, str]) -> None:
    stream = Stream(server["base"], "/ag-ui/demo/echo", body=run_input("hi"))
    try:
        assert stream.response.status == 401
    finally:
        stream.close()
