"""The built-in agent classes driven through real jobs: submitted, claimed and run by the real runner.

Model calls go to the loopback OpenAI-compatible server over HTTP; Celery is not needed to run one job here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.models import Agent, ModelProvider
from jobs import services as job_services
from jobs.models import Job, JobStatus
from jobs.runner import execute
from tests.agents.factories import AgentFactory
from tests.agents.openai_server import OpenAIServer, ScriptedToolCall
from tests.factories import TenantFactory, UserFactory
from threads.models import Event, Message, MessageRole

pytestmark = pytest.mark.django_db

PROBLEM = "urn:aihub:problem:"


def run(agent: Agent, text: str) -> Job:
    """Submit a message to the agent and run the job to its end, as a worker would."""
    job, created = job_services.job_submit(agent=agent, user=UserFactory.create(), content=text)
    assert created
    claimed = job_services.job_claim(job_id=job.id, worker="test-worker")
    assert claimed is not None
    execute(claimed)
    claimed.refresh_from_db()
    return claimed


def events_of(job: Job) -> list[Event]:
    return list(Event.objects.filter(thread_id=job.thread_id).order_by("sequence"))


def types_of(job: Job) -> list[str]:
    return [event.type for event in events_of(job)]


def deltas_of(job: Job) -> list[str]:
    return [event.data["delta"] for event in events_of(job) if event.type == "llm.chunk"]


def assistant_messages(job: Job) -> list[Message]:
    return list(Message.objects.filter(thread_id=job.thread_id, role=MessageRole.ASSISTANT))


def reply_text(job: Job) -> str:
    (message,) = assistant_messages(job)
    return "".join(block["text"] for block in message.content if block["type"] == "text")


def assert_gap_free(job: Job) -> None:
    sequences = [event.sequence for event in events_of(job)]
    assert sequences == list(range(1, len(sequences) + 1))


def chat_agent(provider: ModelProvider, **fields: Any) -> Agent:
    return AgentFactory.create(class_name="chat", model=f"{provider.name}/gpt-loopback", **fields)


# --- echo --------------------------------------------------------------------------------------------------


def test_the_echo_agent_answers_with_the_message_streamed_word_by_word() -> None:
    job = run(AgentFactory.create(class_name="echo", config={"prefix": "Echo: "}), "Hello there")

    assert job.status == JobStatus.SUCCEEDED
    assert reply_text(job) == "Echo: Hello there"
    assert deltas_of(job) == ["Echo:", " Hello", " there"]
    assert job.output["content"] == [{"type": "text", "text": "Echo: Hello there"}]
    assert_gap_free(job)


# --- chat against an OpenAI-compatible endpoint ------------------------------------------------------------


def test_the_chat_agent_streams_the_models_answer_into_the_event_log(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.reply_text("Otters hold hands while sleeping.", prompt_tokens=21, completion_tokens=6)
    agent = chat_agent(loopback_provider, system_prompt="You know animals.")

    job = run(agent, "Tell me about otters")

    assert job.status == JobStatus.SUCCEEDED
    assert reply_text(job) == "Otters hold hands while sleeping."
    assert deltas_of(job) == ["Otters", " hold", " hands", " while", " sleeping."]
    assert (job.usage["input_tokens"], job.usage["output_tokens"], job.usage["total_tokens"]) == (21, 6, 27)
    assert types_of(job) == [
        "message.created",
        "job.queued",
        "job.started",
        "llm.started",
        *["llm.chunk"] * 5,
        "llm.completed",
        "message.created",
        "job.succeeded",
    ]
    assert_gap_free(job)


def test_the_chat_agent_sends_the_system_prompt_and_the_message_to_the_providers_model(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.reply_text("Hi!")

    run(chat_agent(loopback_provider, system_prompt="You know animals.", config={"temperature": 0.5}), "Hello")

    (request,) = openai_server.requests
    assert request.body["model"] == "gpt-loopback"
    assert request.body["messages"] == [
        {"role": "system", "content": "You know animals."},
        {"role": "user", "content": "Hello"},
    ]
    assert request.body["temperature"] == 0.5
    assert request.body["stream_options"] == {"include_usage": True}


# --- tools: a function-calling round trip ------------------------------------------------------------------


def test_the_tools_agent_runs_the_tool_the_model_calls_and_sends_back_its_result(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.reply_tool_calls(
        ScriptedToolCall("calculator", {"expression": "2 * (3 + 4)"}, id="call_calc"),
        prompt_tokens=40,
        completion_tokens=12,
    )
    openai_server.reply_text("It is 14.", prompt_tokens=60, completion_tokens=4)
    agent = AgentFactory.create(class_name="tools", model="loopback/gpt-loopback", tools=["calculator"])

    job = run(agent, "What is 2 * (3 + 4)?")

    assert job.status == JobStatus.SUCCEEDED
    assert reply_text(job) == "It is 14."
    completed = next(event for event in events_of(job) if event.type == "tool.completed")
    assert completed.data == {"id": "call_calc", "name": "calculator", "output": "14", "is_error": False}
    assert (job.usage["input_tokens"], job.usage["output_tokens"], job.usage["total_tokens"]) == (100, 16, 116)

    first, second = openai_server.requests
    assert [tool["function"]["name"] for tool in first.body["tools"]] == ["calculator"]
    assert second.messages[-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_calc",
                "type": "function",
                "function": {"name": "calculator", "arguments": json.dumps({"expression": "2 * (3 + 4)"})},
            }
        ],
    }
    assert second.messages[-1] == {"role": "tool", "tool_call_id": "call_calc", "content": json.dumps("14")}
    assert_gap_free(job)


def test_the_tools_agent_does_the_same_round_trip_on_the_offline_model() -> None:
    agent = AgentFactory.create(class_name="tools", model="offline/aihub-offline-1", tools=["calculator"])

    job = run(agent, "calculate 6 * 7")

    assert job.status == JobStatus.SUCCEEDED
    assert reply_text(job) == "The result is 42."
    assert [t for t in types_of(job) if t.startswith("tool.")] == ["tool.started", "tool.completed"]


# --- faults: the job ends in a defined state, the log stays gap-free ---------------------------------------


def test_provider_errors_that_outlast_the_retries_fail_the_job_with_problem_details(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(500, "upstream overloaded", retry_after="0.01")
    openai_server.reply_status(500, "upstream overloaded", retry_after="0.01")

    job = run(chat_agent(loopback_provider), "Anyone there?")

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == f"{PROBLEM}provider-error"
    assert job.error["status"] == 502
    assert "500" in job.error["detail"] and "upstream overloaded" in job.error["detail"]
    assert len(openai_server.requests) == 1 + loopback_provider.max_retries
    assert assistant_messages(job) == []
    assert types_of(job)[-1] == "job.failed"
    assert events_of(job)[-1].data["error"]["type"] == f"{PROBLEM}provider-error"
    assert_gap_free(job)


def test_a_stream_dropped_half_way_fails_the_job_and_keeps_the_chunks_that_arrived(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.reply_half_stream(["The", " answer", " is", " forty", " two"], drop_after=3)

    job = run(chat_agent(loopback_provider), "What is the answer?")

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == f"{PROBLEM}provider-stream-interrupted"
    assert deltas_of(job) == ["The", " answer", " is"]
    assert assistant_messages(job) == []
    assert types_of(job)[-1] == "job.failed"
    assert_gap_free(job)


def test_a_provider_slower_than_its_timeout_fails_the_job_as_a_timeout(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    ModelProvider.objects.filter(pk=loopback_provider.pk).update(timeout_seconds=0.2, max_retries=0)
    openai_server.reply_slowly(5)

    job = run(chat_agent(loopback_provider), "Hello?")

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert (job.error["type"], job.error["status"]) == (f"{PROBLEM}provider-timeout", 504)
    assert_gap_free(job)


def test_a_provider_answering_garbage_fails_the_job(
    loopback_provider: ModelProvider, openai_server: OpenAIServer
) -> None:
    openai_server.reply_garbage(b"data: {not json at all\n\n")

    job = run(chat_agent(loopback_provider), "Hello?")

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == f"{PROBLEM}provider-bad-response"
    assert assistant_messages(job) == []
    assert_gap_free(job)


def test_a_provider_without_its_api_key_fails_the_job_naming_the_variable(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIHUB_TEST_UNSET_KEY", raising=False)
    provider = ModelProvider.objects.create(
        name="keyless", base_url=openai_server.base_url, api_key_env="AIHUB_TEST_UNSET_KEY"
    )

    job = run(chat_agent(provider), "Hello?")

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == f"{PROBLEM}provider-misconfigured"
    assert "AIHUB_TEST_UNSET_KEY" in job.error["detail"]
    assert openai_server.requests == []


def test_a_model_id_naming_no_provider_fails_the_job() -> None:
    agent = AgentFactory.create(tenant=TenantFactory.create(), class_name="chat", model="nowhere/gpt-4o")

    job = run(agent, "Hello?")

    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert "nowhere" in job.error["detail"]
    assert_gap_free(job)
