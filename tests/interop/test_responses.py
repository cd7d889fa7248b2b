"""The OpenAI Responses API: the official openai SDK, unchanged, against a real daphne with the offline model; and
tenant isolation through Django's test client."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from asgiref.sync import async_to_sync
from openai import OpenAI
from rest_framework.test import APIClient

from aihub.access.models import Membership
from aihub.interop.conversation import turn_submit
from aihub.interop.responses import response_base, response_frames, response_id
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs
from tests.sample_files import png
from tests.servers import http_json
from threads import services as thread_services
from threads.events import EventType, NewEvent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(embedded_server: tuple[str, str]) -> OpenAI:
    base, token = embedded_server
    return OpenAI(base_url=f"{base}/openai/v1", api_key=token, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def slow_echo(embedded_server: tuple[str, str]) -> str:
    """An echo agent that takes a while per word, so a response can be cancelled while it runs."""
    base, token = embedded_server
    body = {"slug": "slow-echo", "name": "Slow echo", "class_name": "echo", "config": {"chunk_delay_seconds": 0.5}}
    status, agent = http_json(f"{base}/api/v1/demo/agents/", body=body, token=token)
    assert status == 201, agent
    return "slow-echo"


def first_text(item: Any) -> str:
    return str(item.content[0].text)


def thread_messages(embedded_server: tuple[str, str], thread: str) -> list[dict[str, Any]]:
    base, token = embedded_server
    status, page = http_json(f"{base}/api/v1/demo/threads/{thread}/messages/", token=token)
    assert status == 200, page
    return list(page["items"])


def test_a_response_is_the_agents_answer_with_usage_and_metadata(
    client: OpenAI, embedded_server: tuple[str, str]
) -> None:
    response = client.responses.create(
        model="echo", input="hello there", instructions="Be brief.", metadata={"ticket": "T-42"}
    )
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "hello there"
    assert (response.model, response.instructions, response.metadata) == ("echo", "Be brief.", {"ticket": "T-42"})
    assert response.usage is not None and response.usage.output_tokens == 2
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.conversation is not None
    stored = thread_messages(embedded_server, response.conversation.id)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"][0]["text"] == response.output_text

    again = client.responses.retrieve(response.id)
    assert again.model_dump(exclude={"background"}) == response.model_dump(exclude={"background"})


def test_a_streamed_response_sends_responses_events_in_order(client: OpenAI, embedded_server: tuple[str, str]) -> None:
    events = list(client.responses.create(model="echo", input="one two three four", stream=True))
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert types.index("response.output_item.added") < types.index("response.output_text.delta")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas == ["one", " two", " three", " four"]
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.status == "completed" and completed.output_text == "one two three four"
    assert completed.usage is not None and completed.usage.output_tokens == 4
    assert completed.conversation is not None
    reply = thread_messages(embedded_server, completed.conversation.id)[-1]
    assert reply["content"][0]["text"] == "".join(deltas)


def test_a_tool_the_agent_calls_is_a_function_call_item(client: OpenAI) -> None:
    events = list(client.responses.create(model="calculator", input="calculate 2 * (3 + 4)", stream=True))
    arguments = [event for event in events if event.type == "response.function_call_arguments.delta"]
    assert len(arguments) == 1 and "3 + 4" in arguments[0].delta
    completed = events[-1].response  # type: ignore[union-attr]
    kinds = [item.type for item in completed.output]
    assert kinds == ["function_call", "message"]
    assert completed.output[0].name == "calculator"  # type: ignore[union-attr]
    assert "14" in completed.output_text


def test_a_background_response_is_retrieved_and_streamed_again_from_any_sequence_number(client: OpenAI) -> None:
    started = client.responses.create(model="echo", input="alpha beta gamma", background=True)
    assert started.status in ("queued", "in_progress", "completed")
    assert started.background is True

    whole = list(client.responses.retrieve(started.id, stream=True))
    assert whole[-1].type == "response.completed"
    resumed = list(client.responses.retrieve(started.id, stream=True, starting_after=3))
    assert [(e.sequence_number, e.type) for e in resumed] == [(e.sequence_number, e.type) for e in whole[4:]]
    assert client.responses.retrieve(started.id).output_text == "alpha beta gamma"


def test_previous_response_id_continues_the_thread(client: OpenAI) -> None:
    first = client.responses.create(model="assistant", input="My name is Ada.")
    second = client.responses.create(model="assistant", input="What is my name?", previous_response_id=first.id)
    alone = client.responses.create(model="assistant", input="What is my name?")
    assert second.previous_response_id == first.id
    assert second.conversation == first.conversation
    assert second.usage is not None and alone.usage is not None
    # The second turn's prompt held the first turn too.
    assert second.usage.input_tokens > alone.usage.input_tokens
    items = client.responses.input_items.list(second.id)
    assert [first_text(item) for item in items.data] == ["What is my name?"]


def test_input_items_are_the_responses_own_input_newest_first(client: OpenAI) -> None:
    response = client.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "first"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
    )
    items = client.responses.input_items.list(response.id)
    assert [(item.role, first_text(item)) for item in items.data] == [  # type: ignore[union-attr]
        ("user", "second"),
        ("assistant", "first"),
        ("user", "first"),
    ]
    page = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [item.id for item in page.data] == [items.data[2].id, items.data[1].id] and page.has_more


def test_an_image_input_reaches_the_thread_as_a_file(client: OpenAI, embedded_server: tuple[str, str]) -> None:
    image = "data:image/png;base64," + base64.b64encode(png()).decode()
    response = client.responses.create(
        model="echo",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "describe this"},
                    {"type": "input_image", "image_url": image, "detail": "low"},
                ],
            }
        ],
    )
    assert response.output_text == "describe this"
    assert response.conversation is not None
    block = thread_messages(embedded_server, response.conversation.id)[0]["content"][1]
    assert (block["type"], block["media_type"], block["detail"]) == ("image", "image/png", "low")


def test_a_running_response_is_cancelled(client: OpenAI, slow_echo: str) -> None:
    started = client.responses.create(model=slow_echo, input="a b c d e f g h i j", background=True)
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(started.id).status == "cancelled"
    assert client.responses.cancel(started.id).status == "cancelled"
    events = list(client.responses.retrieve(started.id, stream=True))
    last: Any = events[-1]
    assert (last.type, last.response.status) == ("response.incomplete", "cancelled")


def test_a_deleted_response_is_gone_and_its_thread_stays(client: OpenAI, embedded_server: tuple[str, str]) -> None:
    response = client.responses.create(model="echo", input="forget me")
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)
    assert response.conversation is not None
    assert len(thread_messages(embedded_server, response.conversation.id)) == 2


def test_a_response_not_stored_is_answered_then_gone(client: OpenAI) -> None:
    response = client.responses.create(model="echo", input="just once", store=False)
    assert response.output_text == "just once"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model="echo", input="more", previous_response_id=response.id)
    assert raised.value.param == "previous_response_id"


def test_bad_requests_are_openai_errors(client: OpenAI) -> None:
    wrong: Any = {"number": 5, "text": "yes", "robot": [{"role": "robot", "content": "hi"}]}
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.responses.create(model="no-such-agent", input="hi")
    assert (unknown_model.value.code, unknown_model.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as bad_input:
        client.responses.create(model="echo", input=wrong["number"])
    assert (bad_input.value.code, bad_input.value.param) == ("invalid_type", "input")
    with pytest.raises(openai.BadRequestError) as bad_flag:
        client.responses.create(model="echo", input="hi", stream=wrong["text"])
    assert bad_flag.value.param == "stream"
    with pytest.raises(openai.BadRequestError) as bad_role:
        client.responses.create(model="echo", input=wrong["robot"])
    assert bad_role.value.param == "input[0].role"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_" + "0" * 32)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("not-a-response")


def test_another_tenants_response_is_not_found(client_as: ClientAs, membership: Membership) -> None:
    agent = AgentFactory.create(tenant=membership.tenant, slug="echo")
    job = turn_submit(agent=agent, user=membership.user, content="mine")
    other = MembershipFactory.create()
    AgentFactory.create(tenant=other.tenant, slug="echo")
    outsider: APIClient = client_as(other)
    for method, path in [
        ("get", f"/openai/v1/responses/{response_id(job)}"),
        ("get", f"/openai/v1/responses/{response_id(job)}/input_items"),
        ("post", f"/openai/v1/responses/{response_id(job)}/cancel"),
        ("delete", f"/openai/v1/responses/{response_id(job)}"),
    ]:
        answer = getattr(outsider, method)(path)
        assert answer.status_code == 404, answer.content
        assert answer.json()["error"]["code"] == "not_found"
    continued = outsider.post(
        "/openai/v1/responses",
        {"model": "echo", "input": "theirs", "previous_response_id": response_id(job)},
        format="json",
    )
    assert continued.status_code == 404, continued.content
    assert continued.json()["error"]["param"] == "previous_response_id"
    owner = client_as(membership).get(f"/openai/v1/responses/{response_id(job)}")
    assert owner.status_code == 200 and owner.json()["status"] == "queued"


# The stream reads the log through database_sync_to_async, which closes a connection inside a test's transaction.
@pytest.mark.django_db(transaction=True)
def test_a_stream_of_a_job_that_waits_for_a_person_ends_with_an_error_event(membership: Membership) -> None:
    agent = AgentFactory.create(tenant=membership.tenant, slug="echo")
    job = turn_submit(agent=agent, user=membership.user, content="Refund order 42")
    # What the runner does when a tool needs approval: the job pauses and says so in the log.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.REQUIRES_ACTION)
    thread_services.events_append(
        thread=job.thread, events=[NewEvent(EventType.JOB_REQUIRES_ACTION, {"id": str(job.pk)}, job_id=job.pk)]
    )
    base = response_base(job, default_tenant_id=membership.tenant_id)

    async def frames() -> list[str]:
        return [frame async for frame in response_frames(job, base)]

    sent = [frame for frame in async_to_sync(frames)() if frame.startswith("event:")]
    assert [frame.split("\n")[0] for frame in sent] == ["event: response.created", "event: error"]
    error = json.loads(sent[-1].split("data: ", 1)[1])
    assert (error["code"], error["sequence_number"]) == ("requires_action", 1)
    assert f"jobs/{job.pk}/respond" in error["message"]
