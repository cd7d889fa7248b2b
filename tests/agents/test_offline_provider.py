"""The built-in offline model: deterministic, no network, and able to call the calculator and the clock."""

from __future__ import annotations

from typing import Any

from agents.providers import DEFAULT_MODEL, provider_for
from agents.providers.base import ChatRequest, Finished, StreamItem, TextDelta, ToolCall, Usage
from agents.providers.offline import OFFLINE_MODEL, OfflineProvider
from agents.tools import get_tool


def offered(*names: str) -> list[dict[str, Any]]:
    return [tool.openai_schema() for name in names if (tool := get_tool(name)) is not None]


def ask(*messages: dict[str, Any], tools: list[dict[str, Any]] | None = None) -> ChatRequest:
    return ChatRequest(model=OFFLINE_MODEL, messages=list(messages), tools=tools or [])


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def answer(items: list[StreamItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


def test_the_same_input_gives_the_same_output() -> None:
    request = ask({"role": "system", "content": "Be kind."}, user("Tell me about otters"))

    assert list(OfflineProvider().stream(request)) == list(OfflineProvider().stream(request))


def test_it_restates_the_last_user_message_word_by_word() -> None:
    items = list(OfflineProvider().stream(ask(user("Tell me about otters"))))

    assert items[:2] == [TextDelta("You"), TextDelta(" said:")]
    assert answer(items) == "You said: Tell me about otters"
    assert items[-1] == Finished("stop")


def test_it_reports_usage_before_it_finishes() -> None:
    items = list(OfflineProvider().stream(ask(user("one two three"))))

    usage = items[-2]
    assert isinstance(usage, Usage)
    assert usage.input_tokens == 3
    assert usage.output_tokens == 5  # "You said: one two three"


def test_offered_the_calculator_it_calls_it_for_a_calculation() -> None:
    items = list(OfflineProvider().stream(ask(user("Please calculate 2 * (3 + 4)"), tools=offered("calculator"))))

    call = items[0]
    assert isinstance(call, ToolCall)
    assert (call.name, call.arguments) == ("calculator", {"expression": "2 * (3 + 4)"})
    assert call.id.startswith("call_")
    assert items[-1] == Finished("tool_calls")
    assert answer(items) == ""


def test_offered_the_clock_it_calls_it_when_asked_the_time() -> None:
    items = list(OfflineProvider().stream(ask(user("What time is it?"), tools=offered("current_time"))))

    assert isinstance(items[0], ToolCall)
    assert (items[0].name, items[0].arguments) == ("current_time", {})


def test_tool_call_ids_are_deterministic_too() -> None:
    request = ask(user("calculate 1 + 1"), tools=offered("calculator"))

    first, second = next(iter(OfflineProvider().stream(request))), next(iter(OfflineProvider().stream(request)))

    assert first == second


def test_without_the_tool_on_offer_it_just_answers() -> None:
    items = list(OfflineProvider().stream(ask(user("calculate 2 * (3 + 4)"), tools=offered("current_time"))))

    assert not any(isinstance(item, ToolCall) for item in items)
    assert answer(items) == "You said: calculate 2 * (3 + 4)"


def test_after_a_tool_result_it_answers_with_the_result() -> None:
    request = ask(
        user("calculate 2 * (3 + 4)"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '"14"'},
        tools=offered("calculator"),
    )

    items = list(OfflineProvider().stream(request))

    assert answer(items) == "The result is 14."
    assert items[-1] == Finished("stop")


def test_the_default_model_is_the_offline_one_and_needs_no_database() -> None:
    chat, model = provider_for(DEFAULT_MODEL)

    assert isinstance(chat, OfflineProvider)
    assert model == OFFLINE_MODEL


def test_offered_publish_note_it_publishes_a_note_written_as_title_bar_text() -> None:
    request = ask(
        user("note: Shopping | milk at 5 pm, calculate 2 + 2 later"), tools=offered("publish_note", "calculator")
    )

    [call, *_rest] = list(OfflineProvider().stream(request))

    assert isinstance(call, ToolCall)
    assert (call.name, call.arguments) == (
        "publish_note",
        {"title": "Shopping", "text": "milk at 5 pm, calculate 2 + 2 later"},
    )


def test_without_publish_note_offered_a_note_is_just_restated() -> None:
    items = list(OfflineProvider().stream(ask(user("note: Shopping | milk"))))

    assert answer(items) == "You said: note: Shopping | milk"


def test_use_and_a_tool_name_calls_any_offered_tool_with_the_json_arguments_given() -> None:
    request = ask(user('Please use get_state {"key": "plan"} now'), tools=offered("get_state", "calculator"))

    [call] = [item for item in OfflineProvider().stream(request) if isinstance(item, ToolCall)]

    assert (call.name, call.arguments) == ("get_state", {"key": "plan"})


def test_use_without_json_arguments_calls_the_tool_with_none() -> None:
    request = ask(user("use current_time"), tools=offered("current_time"))

    [call] = [item for item in OfflineProvider().stream(request) if isinstance(item, ToolCall)]

    assert (call.name, call.arguments) == ("current_time", {})


def test_use_of_a_tool_not_on_offer_is_just_restated() -> None:
    items = list(OfflineProvider().stream(ask(user("use set_state"), tools=offered("calculator"))))

    assert not any(isinstance(item, ToolCall) for item in items)
    assert answer(items) == "You said: use set_state"
