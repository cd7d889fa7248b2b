"""Tools: typed functions with JSON-schema arguments, validated before the call; the built-ins are server-safe."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.core.exceptions import ValidationError

from agents.tools import (
    CLIENT_TOOLS_MAX,
    TOOLS,
    ToolArgumentsInvalid,
    ToolContext,
    ToolError,
    client_tools_validate,
    get_tool,
)
from tests.threads.factories import ThreadFactory
from threads.models import Event, Thread


def call(name: str, context: ToolContext | None = None, **arguments: object) -> object:
    tool = get_tool(name)
    assert tool is not None
    return tool.call(context or ToolContext(tenant_id=None), arguments)


def state_context(thread: Thread) -> ToolContext:
    return ToolContext(tenant_id=thread.tenant_id, thread_id=thread.pk)


# --- Schemas ---------------------------------------------------------------------------------------------


def test_the_built_ins_are_registered() -> None:
    assert {"current_time", "calculator", "get_state", "set_state"} <= set(TOOLS)


def test_arguments_become_a_strict_json_schema() -> None:
    assert get_tool("calculator").parameters_schema == {  # type: ignore[union-attr]
        "type": "object",
        "properties": {"expression": {"title": "Expression", "type": "string"}},
        "required": ["expression"],
        "additionalProperties": False,
    }
    current_time = get_tool("current_time").parameters_schema  # type: ignore[union-attr]
    assert current_time["properties"]["timezone"]["default"] == "UTC"
    assert "required" not in current_time
    assert get_tool("set_state").parameters_schema["required"] == ["key", "value"]  # type: ignore[union-attr]


def test_the_openai_schema_carries_the_docstring_as_description() -> None:
    schema = get_tool("calculator").openai_schema()  # type: ignore[union-attr]

    assert schema["type"] == "function"
    assert schema["function"]["name"] == "calculator"
    assert schema["function"]["description"].startswith("Evaluate an arithmetic expression")


# --- Validation ------------------------------------------------------------------------------------------


def test_missing_wrong_and_unknown_arguments_are_listed_by_field() -> None:
    with pytest.raises(ToolArgumentsInvalid) as missing:
        call("calculator")
    with pytest.raises(ToolArgumentsInvalid) as wrong:
        call("calculator", expression=["1 + 1"])
    with pytest.raises(ToolArgumentsInvalid) as unknown:
        call("calculator", expression="1", precision=3)

    assert [(e["field"], e["code"]) for e in missing.value.errors] == [("expression", "missing")]
    assert [e["field"] for e in wrong.value.errors] == ["expression"]
    assert [(e["field"], e["code"]) for e in unknown.value.errors] == [("precision", "extra_forbidden")]


# --- Calculator ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "result"),
    [("2 * (3 + 4)", "14"), ("7 / 2", "3.5"), ("7 // 2", "3"), ("-2 ** 2", "-4"), ("2 ^ 10", "1024"), ("10 % 4", "2")],
)
def test_the_calculator_does_arithmetic(expression: str, result: str) -> None:
    assert call("calculator", expression=expression) == result


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "(1).__class__",
        "[1, 2]",
        "x + 1",
        "True + 1",
        "'a' * 3",
        "lambda: 1",
    ],
)
def test_the_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ToolError, match="Only numbers"):
        call("calculator", expression=expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9 ** 9 ** 9", "Exponents above 100"),
        ("2 ** 1000", "Exponents above 100"),
        ("(10 ** 100) ** 100", "too large"),
        ("1e308 * 10", "too large"),
        ("1e308 * 10 - 1e308 * 10", "too large"),
        ("1 / 0", "Division by zero"),
        ("1 +", "Not an arithmetic expression"),
        ("1 + " * 60 + "1", "too long"),
    ],
)
def test_the_calculator_refuses_huge_or_broken_expressions(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        call("calculator", expression=expression)


# --- Current time ----------------------------------------------------------------------------------------


def test_current_time_is_utc_by_default() -> None:
    now = datetime.fromisoformat(str(call("current_time")))

    assert now.utcoffset() is not None
    assert now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_current_time_in_another_zone_has_that_zones_offset() -> None:
    tokyo = datetime.fromisoformat(str(call("current_time", timezone="Asia/Tokyo")))

    assert tokyo.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "x" * 500])
def test_current_time_refuses_unknown_zones(zone: str) -> None:
    with pytest.raises(ToolError, match="Unknown time zone"):
        call("current_time", timezone=zone)


# --- State -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_set_state_merges_a_key_into_the_threads_state_and_records_it() -> None:
    thread = ThreadFactory.create()
    context = state_context(thread)

    assert call("set_state", context, key="plan", value="premium") == "ok"
    assert call("set_state", context, key="seats", value=3) == "ok"

    thread.refresh_from_db()
    assert thread.state == {"plan": "premium", "seats": 3}
    updates = list(Event.objects.filter(thread=thread, type="state.updated").order_by("sequence"))
    assert [event.data for event in updates] == [
        {"mode": "merge", "state": {"plan": "premium"}},
        {"mode": "merge", "state": {"plan": "premium", "seats": 3}},
    ]


@pytest.mark.django_db
def test_get_state_reads_one_key_or_all_of_it() -> None:
    thread = ThreadFactory.create()
    context = state_context(thread)
    call("set_state", context, key="plan", value={"tier": "premium"})

    assert call("get_state", context) == {"plan": {"tier": "premium"}}
    assert call("get_state", context, key="plan") == {"tier": "premium"}
    assert call("get_state", context, key="missing") is None


@pytest.mark.django_db
def test_state_tools_need_a_thread_of_their_own_tenant() -> None:
    thread = ThreadFactory.create()
    other_tenant = ThreadFactory.create().tenant

    with pytest.raises(ToolError, match="no thread"):
        call("get_state", ToolContext(tenant_id=thread.tenant_id))
    with pytest.raises(ToolError, match="no thread"):
        call("set_state", ToolContext(tenant_id=other_tenant.pk, thread_id=thread.pk), key="k", value=1)

    thread.refresh_from_db()
    assert thread.state == {}


# --- Client tools --------------------------------------------------------------------------------------------


def test_a_client_tool_is_kept_with_its_schema_and_a_missing_schema_takes_no_arguments() -> None:
    schema = {"type": "object", "properties": {"item": {"type": "string"}}}

    checked = client_tools_validate([{"name": "pick", "description": "Pick.", "parameters": schema}, {"name": "ok"}])

    assert checked == [
        {"name": "pick", "description": "Pick.", "parameters": schema},
        {"name": "ok", "description": "", "parameters": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("tools", "field"),
    [
        ({"name": "x"}, "tools"),
        ([{"name": f"t{n}"} for n in range(CLIENT_TOOLS_MAX + 1)], "tools"),
        (["pick"], "tools[0]"),
        ([{"name": "no spaces"}], "tools[0].name"),
        ([{"name": "pick"}, {"name": "pick"}], "tools[1].name"),
        ([{"name": "calculator"}], "tools[0].name"),
        ([{"name": "pick", "parameters": {"type": "string"}}], "tools[0].parameters"),
        ([{"name": "pick", "parameters": {"type": "object", "properties": 3}}], "tools[0].parameters"),
        ([{"name": "pick", "description": "x" * 20_000}], "tools[0]"),
    ],
)
def test_client_tools_are_bounded_and_their_schemas_checked(tools: object, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        client_tools_validate(tools, reserved=["calculator"])

    assert field in raised.value.message_dict
