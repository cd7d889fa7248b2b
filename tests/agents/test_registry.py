"""The registry of agent classes: the built-ins, their config schemas, and plug-ins from entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from agents import registry
from agents.classes.echo import EchoAgent
from agents.tools import TOOLS
from tests.agents.factories import AgentFactory
from tests.agents.plugin_classes import ShoutAgent


@pytest.fixture
def plug_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """Entry points of the ``aihub.agent_classes`` group, as an installed package would declare them."""
    installed: list[EntryPoint] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        return installed if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", entry_points)
    registry.reset_plug_ins()
    yield installed
    registry.reset_plug_ins()


def plug_in(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"tests.agents.plugin_classes:{target}", group=registry.ENTRY_POINT_GROUP)


def test_the_built_in_classes_are_registered() -> None:
    assert {"echo", "chat", "tools"} <= set(registry.agent_classes())
    assert registry.get_agent_class("echo") is EchoAgent
    assert registry.get_agent_class("no-such-class") is None


def test_every_class_publishes_a_json_schema_of_its_config() -> None:
    for name, agent_class in registry.agent_classes().items():
        schema = agent_class.config_schema()
        assert schema["type"] == "object", name
        assert schema["additionalProperties"] is False, name


def test_the_chat_schema_bounds_its_parameters() -> None:
    properties = registry.get_agent_class("chat").config_schema()["properties"]  # type: ignore[union-attr]

    assert properties["history_window"]["default"] == 20
    assert properties["history_window"]["maximum"] == 500
    assert {"temperature", "max_tokens"} <= properties.keys()


def test_the_tools_class_offers_every_registered_tool_and_the_others_none() -> None:
    assert set(registry.get_agent_class("tools").tool_names()) == set(TOOLS)  # type: ignore[union-attr]
    assert registry.get_agent_class("echo").tool_names() == ()  # type: ignore[union-attr]
    assert registry.get_agent_class("echo").needs_model is False  # type: ignore[union-attr]


def test_a_plug_in_class_is_found_through_its_entry_point(plug_ins: list[EntryPoint]) -> None:
    plug_ins.append(plug_in("shout", "ShoutAgent"))

    assert registry.get_agent_class("shout") is ShoutAgent
    assert list(registry.agent_classes())[-1] == "shout"  # after the built-ins


@pytest.mark.django_db
def test_agents_of_a_plug_in_class_are_validated_against_its_schema(plug_ins: list[EntryPoint]) -> None:
    plug_ins.append(plug_in("shout", "ShoutAgent"))

    agent = AgentFactory.create(class_name="shout", config={"exclamations": 3})

    assert agent.config == {"exclamations": 3}


def test_plug_ins_are_read_once_until_the_cache_is_cleared(plug_ins: list[EntryPoint]) -> None:
    assert registry.get_agent_class("shout") is None

    plug_ins.append(plug_in("shout", "ShoutAgent"))
    assert registry.get_agent_class("shout") is None

    registry.reset_plug_ins()
    assert registry.get_agent_class("shout") is ShoutAgent


@pytest.mark.parametrize(
    "target",
    ["NotAnAgentClass", "NoSuchName", "AgentClass"],
    ids=["not an agent class", "missing", "abstract"],
)
def test_broken_plug_ins_are_skipped_and_logged(
    plug_ins: list[EntryPoint], caplog: pytest.LogCaptureFixture, target: str
) -> None:
    plug_ins.append(plug_in("broken", target))
    plug_ins.append(plug_in("shout", "ShoutAgent"))

    classes = registry.agent_classes()

    assert "shout" in classes
    assert "nothing" not in classes
    assert any("broken" in record.getMessage() for record in caplog.records)


def test_a_plug_in_cannot_replace_a_built_in(plug_ins: list[EntryPoint], caplog: pytest.LogCaptureFixture) -> None:
    plug_ins.append(plug_in("echo", "EchoImpostor"))

    assert registry.get_agent_class("echo") is EchoAgent
    assert any("like a built-in" in record.getMessage() for record in caplog.records)
