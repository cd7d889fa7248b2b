"""The registry of agent classes: built-ins register on import, plug-ins through the entry point group
``aihub.agent_classes`` (each entry a subclass of :class:`AgentClass`)."""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from agents.runtime import AgentOutput, AgentRun

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "aihub.agent_classes"


class AgentConfig(BaseModel):
    """Base of every class's config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AgentClass(ABC):
    """An implementation of agents. Subclasses set ``name``, ``description`` and ``Config``, and yield outputs."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    # Tools the class can use; an instance chooses among them (empty: the class uses no tools).
    supported_tools: ClassVar[tuple[str, ...]] = ()
    needs_model: ClassVar[bool] = True

    def __init__(self, run: AgentRun) -> None:
        self.run = run

    @property
    def config(self) -> Any:
        return self.run.config

    @abstractmethod
    def execute(self) -> Iterator[AgentOutput]:
        """Yield events and replies; return when done. Raise ProviderError for provider failures."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return cls.Config.model_json_schema()

    @classmethod
    def tool_names(cls) -> tuple[str, ...]:
        """The tools an instance of this class may be given (a method, so a class can follow the tool registry)."""
        return cls.supported_tools


_BUILT_INS: dict[str, type[AgentClass]] = {}


def register(agent_class: type[AgentClass]) -> type[AgentClass]:
    _BUILT_INS[agent_class.name] = agent_class
    return agent_class


@cache
def _plug_ins() -> dict[str, type[AgentClass]]:
    found: dict[str, type[AgentClass]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception:
            logger.exception("agent class plug-in %s failed to load", entry_point.name)
            continue
        usable = (
            isinstance(loaded, type)
            and issubclass(loaded, AgentClass)
            and not inspect.isabstract(loaded)
            and isinstance(getattr(loaded, "name", None), str)
        )
        if not usable:
            logger.error("agent class plug-in %s is not a concrete AgentClass with a name", entry_point.name)
            continue
        if loaded.name in _BUILT_INS:
            # A plug-in may not replace a built-in: agents of that class would change behaviour silently.
            logger.error("agent class plug-in %s is named %r like a built-in; ignored", entry_point.name, loaded.name)
            continue
        found[loaded.name] = loaded
    return found


def reset_plug_ins() -> None:
    """Forget the plug-ins found so far; the next lookup reads the entry points again."""
    _plug_ins.cache_clear()


def agent_classes() -> dict[str, type[AgentClass]]:
    """Every usable class by name, built-ins first, then plug-ins, each group sorted by name."""
    return {**dict(sorted(_BUILT_INS.items())), **dict(sorted(_plug_ins().items()))}


def get_agent_class(name: str) -> type[AgentClass] | None:
    return agent_classes().get(name)
