"""The OpenAI provider against a loopback server speaking the real wire format: no mocked SDK anywhere."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from agents.models import ModelProvider
from agents.providers.base import ChatRequest, Finished, ProviderError, StreamItem, TextDelta, ToolCall, Usage
from agents.providers.openai import OpenAIProvider
from tests.agents.conftest import LOOPBACK_API_KEY
from tests.agents.openai_server import Answer, OpenAIServer, ScriptedToolCall

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}


def provider(server: OpenAIServer, *, timeout: float = 2.0, max_retries: int = 0, **row: Any) -> OpenAIProvider:
    row.setdefault("api_key", LOOPBACK_API_KEY)
    return OpenAIProvider.from_row(
        ModelProvider(
            name="loopback",
            base_url=row.pop("base_url", server.base_url),
            timeout_seconds=timeout,
            max_retries=max_retries,
            **row,
        )
    )


def ask(text: str = "Hi", **request: Any) -> ChatRequest:
    return ChatRequest(model="gpt-loopback", messages=[{"role": "user", "content": text}], **request)


def streamed(chat: OpenAIProvider, request: ChatRequest | None = None) -> list[StreamItem]:
    return list(chat.stream(request or ask()))


def streamed_until_error(
    chat: OpenAIProvider, request: ChatRequest | None = None
) -> tuple[list[StreamItem], ProviderError]:
    """What the provider yielded before it raised, and what it raised."""
    items: list[StreamItem] = []
    with pytest.raises(ProviderError) as raised:
        for item in chat.stream(request or ask()):
            items.append(item)
    return items, raised.value


# --- streaming ---------------------------------------------------------------------------------------------


def test_text_streams_as_deltas_then_usage_then_the_finish_reason(openai_server: OpenAIServer) -> None:
    openai_server.reply_text("Hello there, friend", prompt_tokens=12, completion_tokens=4)

    assert streamed(provider(openai_server)) == [
        TextDelta("Hello"),
        TextDelta(" there,"),
        TextDelta(" friend"),
        Usage(input_tokens=12, output_tokens=4),
        Finished("stop"),
    ]


def test_the_request_is_a_streaming_chat_completion_asking_for_usage(openai_server: OpenAIServer) -> None:
    openai_server.reply_text("ok")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

    streamed(
        provider(openai_server), ChatRequest(model="gpt-loopback", messages=messages, parameters={"temperature": 0.2})
    )

    (request,) = openai_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {LOOPBACK_API_KEY}"
    assert request.body["model"] == "gpt-loopback"
    assert request.body["messages"] == messages
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["temperature"] == 0.2
    assert "tools" not in request.body


def test_tools_are_offered_only_when_the_request_has_some(openai_server: OpenAIServer) -> None:
    openai_server.reply_text("ok")

    streamed(provider(openai_server), ask(tools=[CALCULATOR]))

    assert openai_server.requests[0].body["tools"] == [CALCULATOR]


def test_tool_calls_are_assembled_from_their_fragments(openai_server: OpenAIServer) -> None:
    openai_server.reply_tool_calls(
        ScriptedToolCall("calculator", {"expression": "2 * (3 + 4)"}, id="call_a", fragments=5),
        ScriptedToolCall("current_time", {"timezone": "Europe/Zurich"}, id="call_b", fragments=3),
        prompt_tokens=30,
        completion_tokens=9,
    )

    assert streamed(provider(openai_server), ask(tools=[CALCULATOR])) == [
        ToolCall(id="call_a", name="calculator", arguments={"expression": "2 * (3 + 4)"}),
        ToolCall(id="call_b", name="current_time", arguments={"timezone": "Europe/Zurich"}),
        Usage(input_tokens=30, output_tokens=9),
        Finished("tool_calls"),
    ]


def test_a_tool_call_without_arguments_gets_an_empty_object(openai_server: OpenAIServer) -> None:
    openai_server.reply_tool_calls(ScriptedToolCall("current_time", "", id="call_t"))

    assert streamed(provider(openai_server))[0] == ToolCall(id="call_t", name="current_time", arguments={})


def test_tool_call_arguments_that_are_not_json_are_a_malformed_tool_call(openai_server: OpenAIServer) -> None:
    openai_server.reply_tool_calls(ScriptedToolCall("calculator", '{"expression": "2 +', id="call_x"))

    items, error = streamed_until_error(provider(openai_server))

    assert items == []
    assert "malformed tool call" in error.detail
    assert error.type_slug == "provider-bad-response"


def test_the_loopback_server_also_answers_without_streaming(openai_server: OpenAIServer) -> None:
    # The wire format the provider does not use (yet) is still the real one, for the tests that need it.
    openai_server.reply_text("Whole answer", prompt_tokens=5, completion_tokens=2)
    client = openai.OpenAI(base_url=openai_server.base_url, api_key=LOOPBACK_API_KEY, max_retries=0)

    completion = client.chat.completions.create(model="gpt-loopback", messages=[{"role": "user", "content": "Hi"}])

    assert completion.choices[0].message.content == "Whole answer"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


# --- retries and errors ------------------------------------------------------------------------------------


def test_rate_limits_and_server_errors_are_retried_until_the_answer_comes(openai_server: OpenAIServer) -> None:
    openai_server.reply_status(429, "slow down", retry_after="0.01")
    openai_server.reply_status(500, "hiccup", retry_after="0.01")
    openai_server.reply_text("Third time lucky")

    items = streamed(provider(openai_server, max_retries=2))

    assert "".join(item.text for item in items if isinstance(item, TextDelta)) == "Third time lucky"
    assert len(openai_server.requests) == 3


def test_server_errors_beyond_the_retries_are_a_provider_error_with_the_providers_words(
    openai_server: OpenAIServer,
) -> None:
    openai_server.reply_status(500, "the GPU caught fire", retry_after="0.01")
    openai_server.reply_status(503, "still on fire", retry_after="0.01")

    _, error = streamed_until_error(provider(openai_server, max_retries=1))

    assert (error.status, error.type_slug) == (502, "provider-error")
    assert "503" in error.detail and "still on fire" in error.detail
    assert len(openai_server.requests) == 2


def test_rate_limiting_beyond_the_retries_is_reported_as_rate_limiting(openai_server: OpenAIServer) -> None:
    openai_server.reply_status(429, "quota exceeded", retry_after="0.01")

    _, error = streamed_until_error(provider(openai_server))

    assert (error.status, error.type_slug) == (429, "provider-rate-limited")
    assert "quota exceeded" in error.detail


def test_a_bad_request_is_not_retried(openai_server: OpenAIServer) -> None:
    openai_server.reply_status(400, "unknown parameter: temperatur")

    _, error = streamed_until_error(provider(openai_server, max_retries=2))

    assert (error.status, error.type_slug) == (502, "provider-error")
    assert "400" in error.detail and "temperatur" in error.detail
    assert len(openai_server.requests) == 1


def test_an_error_message_never_shows_the_api_key(openai_server: OpenAIServer) -> None:
    openai_server.reply_status(401, f"Incorrect API key provided: {LOOPBACK_API_KEY}")

    _, error = streamed_until_error(provider(openai_server))

    assert LOOPBACK_API_KEY not in error.detail
    assert "[redacted]" in error.detail


def test_an_answer_slower_than_the_timeout_is_a_provider_timeout(openai_server: OpenAIServer) -> None:
    openai_server.reply_slowly(5)

    _, error = streamed_until_error(provider(openai_server, timeout=0.2))

    assert (error.status, error.type_slug) == (504, "provider-timeout")


def test_a_timed_out_request_is_retried(openai_server: OpenAIServer) -> None:
    openai_server.reply_slowly(5)
    openai_server.reply_text("Sorry I was late")

    items = streamed(provider(openai_server, timeout=0.2, max_retries=1))

    assert Finished("stop") in items
    assert len(openai_server.requests) == 2


def test_an_endpoint_nobody_listens_on_is_unreachable(closed_port: int) -> None:
    chat = OpenAIProvider.from_row(
        ModelProvider(name="nowhere", base_url=f"http://127.0.0.1:{closed_port}/v1", api_key="k", max_retries=0)
    )

    with pytest.raises(ProviderError) as raised:
        streamed(chat)

    assert (raised.value.status, raised.value.type_slug) == (502, "provider-unreachable")
    assert str(closed_port) in raised.value.detail


# --- garbage and broken streams -----------------------------------------------------------------------------


def test_a_stream_event_that_is_not_json_is_a_bad_response(openai_server: OpenAIServer) -> None:
    openai_server.reply_garbage(b"data: this is not json\n\n")

    _, error = streamed_until_error(provider(openai_server))

    assert (error.status, error.type_slug) == (502, "provider-bad-response")


def test_a_web_page_instead_of_a_stream_is_a_bad_response(openai_server: OpenAIServer) -> None:
    openai_server.reply_garbage(b"<html><body>Welcome to nginx!</body></html>", content_type="text/html")

    _, error = streamed_until_error(provider(openai_server))

    assert (error.status, error.type_slug) == (502, "provider-bad-response")
    assert "OpenAI-compatible" in error.detail


def test_a_stream_dropped_half_way_keeps_the_deltas_that_arrived_then_fails(openai_server: OpenAIServer) -> None:
    openai_server.reply_half_stream(["Once", " upon", " a", " time"], drop_after=2)

    items, error = streamed_until_error(provider(openai_server, max_retries=2))

    assert items == [TextDelta("Once"), TextDelta(" upon")]
    assert (error.status, error.type_slug) == (502, "provider-stream-interrupted")
    assert "connection broke" in error.detail
    # Tokens were already delivered: the request is not silently sent again.
    assert len(openai_server.requests) == 1


def test_a_stream_that_ends_without_a_finish_reason_was_interrupted(openai_server: OpenAIServer) -> None:
    openai_server.reply(Answer(chunks=["Half", " an"], finish_reason=""))

    items, error = streamed_until_error(provider(openai_server))

    assert items == [TextDelta("Half"), TextDelta(" an")]
    assert error.type_slug == "provider-stream-interrupted"


def test_a_tool_call_cut_off_mid_arguments_is_never_handed_over(openai_server: OpenAIServer) -> None:
    openai_server.reply(Answer(tool_calls=[ScriptedToolCall("calculator", {"expression": "1 + 1"})], drop_after=0))

    items, error = streamed_until_error(provider(openai_server))

    assert items == []
    assert error.type_slug == "provider-stream-interrupted"


# --- configuration -----------------------------------------------------------------------------------------


def test_the_api_key_comes_from_the_environment_variable_the_row_names(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIHUB_TEST_LOOPBACK_KEY", "sk-from-the-environment")
    openai_server.reply_text("ok")

    streamed(provider(openai_server, api_key_env="AIHUB_TEST_LOOPBACK_KEY", api_key="sk-not-this-one"))

    assert openai_server.requests[0].headers["authorization"] == "Bearer sk-from-the-environment"


def test_a_missing_environment_variable_is_named_in_the_error(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIHUB_TEST_MISSING_KEY", raising=False)

    with pytest.raises(ProviderError) as raised:
        provider(openai_server, api_key_env="AIHUB_TEST_MISSING_KEY", api_key="sk-not-used")

    assert "AIHUB_TEST_MISSING_KEY" in raised.value.detail
    assert "sk-not-used" not in raised.value.detail
    assert raised.value.type_slug == "provider-misconfigured"
    assert openai_server.requests == []


def test_a_provider_without_any_api_key_says_how_to_give_it_one(openai_server: OpenAIServer) -> None:
    with pytest.raises(ProviderError) as raised:
        provider(openai_server, api_key="")

    assert "api_key_env" in raised.value.detail


@pytest.mark.parametrize("base_url", ["ftp://models.example.com/v1", "file:///etc/passwd", "localhost:8000/v1"])
def test_only_http_and_https_base_urls_are_called(base_url: str) -> None:
    with pytest.raises(ProviderError) as raised:
        OpenAIProvider.from_row(ModelProvider(name="odd", base_url=base_url, api_key="k"))

    assert raised.value.type_slug == "provider-misconfigured"


@pytest.mark.parametrize("base_url", ["https://bob:hunter2@llm.example.com/v1", "ftp://bob:hunter2@llm.example.com/"])
def test_a_base_url_with_credentials_is_refused_without_echoing_them(base_url: str) -> None:
    with pytest.raises(ProviderError) as raised:
        OpenAIProvider.from_row(ModelProvider(name="leaky", base_url=base_url, api_key="k"))

    assert "hunter2" not in raised.value.detail


def test_a_blank_base_url_means_the_openai_api() -> None:
    chat = OpenAIProvider.from_row(ModelProvider(name="openai", base_url="", api_key="k"))

    assert str(chat.client.base_url).startswith("https://api.openai.com/v1")
