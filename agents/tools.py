"""Tools: Python functions with typed arguments, their JSON schemas, and the registry agents draw from.

A tool's first parameter is the :class:`ToolContext`; the others become its JSON-schema arguments, validated
by pydantic before the call. Built-ins are safe on a server: no file system, no network, no shell.

Publishing artifacts: a tool returns one value to the model, and only an agent class yields outputs to the
runner, so a tool publishes through its context instead: ``context.publish_artifact(name=..., ...)``. Within a
job the runner hands the agent class a publisher (``AgentRun.publish_artifact``) that the class puts into the
context; it stores the artifact at once (through ``jobs.services.artifact_publish``, which appends
``artifact.updated``) and returns its summary, so the event sits between the tool's ``tool.started`` and
``tool.completed``. A refusal (too large, malformed) is a ``ToolError``: the model reads why, as for any tool
failure. Outside a job (a direct tool call) there is no publisher and publishing is a ``ToolError`` too.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, create_model
from pydantic import ValidationError as PydanticValidationError

from aihub import tracing


@dataclass
class ToolContext:
    """What a running tool may see: its thread's state, the request's context object, who is asking."""

    tenant_id: Any
    thread_id: Any = None
    job_id: Any = None
    agent_id: Any = None
    user_id: Any = None
    # The request's `context`: visible to tools, never sent to the model.
    context: dict[str, Any] = field(default_factory=dict)
    # The job's artifact publisher (agents.runtime.AgentRun.publish_artifact); None outside a job.
    publisher: Callable[[Any], dict[str, Any]] | None = None

    def publish_artifact(
        self,
        *,
        name: str,
        kind: str = "other",
        data: dict[str, Any] | None = None,
        content: bytes | None = None,
        media_type: str = "",
    ) -> dict[str, Any]:
        """Publish (or update, by name) an artifact of the running job; returns its summary."""
        from agents.runtime import Artifact

        if self.publisher is None:
            raise ToolError("Artifacts can only be published while a job runs.")
        artifact = Artifact(name=name, kind=kind, data=data or {}, content=content, media_type=media_type)
        try:
            return self.publisher(artifact)
        except ValueError as exc:
            raise ToolError(f"The artifact {name[:100]!r} was refused: {exc}") from exc


class ToolError(Exception):
    """The tool ran and failed; the message goes back to the model (and the caller), not a stack trace."""


class ToolArgumentsInvalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("The tool's arguments are invalid.")
        self.errors = errors


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[BaseModel]
    requires_approval: bool = False

    @property
    def parameters_schema(self) -> dict[str, Any]:
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters_schema},
        }

    def call(self, context: ToolContext, arguments: dict[str, Any], *, call_id: str = "") -> Any:
        """Validate the arguments and run the tool; an ``execute_tool <name>`` span when tracing is on."""
        if tracing.tracer is None:
            return self._call(context, arguments)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self.name,
            "gen_ai.tool.type": "function",
        }
        if call_id:
            attributes["gen_ai.tool.call.id"] = call_id
        if tracing.trace_content:
            attributes["gen_ai.tool.call.arguments"] = tracing.content(arguments)
        with tracing.span(f"execute_tool {self.name}", attributes) as span:
            output = self._call(context, arguments)
            if tracing.trace_content:
                span.set_attribute("gen_ai.tool.call.result", tracing.content(output))
            return output

    def _call(self, context: ToolContext, arguments: dict[str, Any]) -> Any:
        try:
            validated = self.arguments_model.model_validate(arguments)
        except PydanticValidationError as exc:
            raise ToolArgumentsInvalid(
                [
                    {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "code": e["type"]}
                    for e in exc.errors()
                ]
            ) from exc
        return self.function(context, **validated.model_dump())


TOOLS: dict[str, Tool] = {}


def tool(
    name: str | None = None, *, requires_approval: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a tool; its docstring is the description the model reads."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        hints = get_type_hints(function)
        parameters = list(inspect.signature(function).parameters.values())[1:]  # the first is the context
        fields: dict[str, Any] = {
            p.name: (hints[p.name], ... if p.default is inspect.Parameter.empty else p.default) for p in parameters
        }
        tool_name = name or function.__name__
        arguments_model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        TOOLS[tool_name] = Tool(
            name=tool_name,
            description=inspect.cleandoc(function.__doc__ or tool_name),
            function=function,
            arguments_model=arguments_model,
            requires_approval=requires_approval,
        )
        return function

    return register


def get_tool(name: str) -> Tool | None:
    return TOOLS.get(name)


# --- Client tools ----------------------------------------------------------------------------------------

CLIENT_TOOLS_MAX = 32
CLIENT_TOOL_MAX_BYTES = 16_384
"""Bounds on what a request may declare: every tool goes to the model with every turn of the job."""

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI-compatible models accept as a function name


def client_tools_validate(tools: Any, *, reserved: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Tools a client declares for one job (``{"name", "description", "parameters"}``), checked: at most
    CLIENT_TOOLS_MAX, each a valid JSON schema of at most CLIENT_TOOL_MAX_BYTES, names unique and none of
    ``reserved`` (the agent's own tools, which a client must not shadow). A ValidationError names what is wrong.

    The client runs them, not the server: a job whose model calls one pauses in requires_action
    (``client_tool``) until the client answers with the tool's output.
    """
    if not isinstance(tools, list):
        raise ValidationError({"tools": "A list of tools."})
    if len(tools) > CLIENT_TOOLS_MAX:
        raise ValidationError({"tools": f"At most {CLIENT_TOOLS_MAX} tools."})
    taken = set(reserved)
    checked: list[dict[str, Any]] = []
    for index, spec in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(spec, dict):
            raise ValidationError({where: "A tool is an object with name, description and parameters."})
        name, description = spec.get("name"), spec.get("description") or ""
        parameters = spec.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise ValidationError({f"{where}.name": "1 to 64 letters, digits, _ or -."})
        if name in taken:
            raise ValidationError({f"{where}.name": f"The name {name!r} is taken (by the agent or another tool)."})
        if not isinstance(description, str):
            raise ValidationError({f"{where}.description": "A string."})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise ValidationError({f"{where}.parameters": "A JSON schema of an object."})
        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as exc:
            raise ValidationError({f"{where}.parameters": f"Not a valid JSON schema: {exc.message}"}) from exc
        tool = {"name": name, "description": description, "parameters": parameters}
        if len(json.dumps(tool).encode()) > CLIENT_TOOL_MAX_BYTES:
            raise ValidationError({where: f"Larger than {CLIENT_TOOL_MAX_BYTES} bytes."})
        taken.add(name)
        checked.append(tool)
    return checked


def client_tool_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """A validated client tool as the model is offered it."""
    return {"type": "function", "function": tool}


# --- Built-ins -------------------------------------------------------------------------------------------


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@tool()
def current_time(context: ToolContext, timezone: str = "UTC") -> str:
    """The current date and time in ISO 8601, in the given IANA time zone (default UTC)."""
    # Checked against the known names first: ZoneInfo treats the name as a path, so odd names fail as OSErrors.
    if timezone not in _time_zones():
        raise ToolError(f"Unknown time zone {timezone[:100]!r}.")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ToolError(f"Unknown time zone {timezone!r}.") from exc
    return datetime.now(UTC).astimezone(zone).isoformat(timespec="seconds")


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ToolError("Exponents above 100 are not allowed.")
        return float(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.operand)))
    raise ToolError("Only numbers and + - * / // % ** and parentheses are allowed.")


@tool()
def calculator(context: ToolContext, expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "2 * (3 + 4)"."""
    if len(expression) > 200:
        raise ToolError("The expression is too long.")
    try:
        value = _evaluate(ast.parse(expression.replace("^", "**"), mode="eval"))
    except SyntaxError as exc:
        raise ToolError(f"Not an arithmetic expression: {expression!r}.") from exc
    except ZeroDivisionError as exc:
        raise ToolError("Division by zero.") from exc
    except OverflowError as exc:
        raise ToolError("The result is too large.") from exc
    # Float arithmetic overflows to inf (and inf - inf is nan) instead of raising.
    if not math.isfinite(value):
        raise ToolError("The result is too large.")
    return str(int(value)) if value == int(value) else repr(value)


def _context_thread(context: ToolContext) -> Any:
    from threads.models import Thread

    # The tenant too: a context is only ever built for one tenant, and must not reach into another's threads.
    thread = Thread.objects.filter(pk=context.thread_id, tenant_id=context.tenant_id).first()
    if context.thread_id is None or thread is None:
        raise ToolError("This tool works on a thread's state, and there is no thread.")
    return thread


@tool()
def get_state(context: ToolContext, key: str | None = None) -> Any:
    """Read the thread's state: one key, or all of it."""
    state = _context_thread(context).state or {}
    return state if key is None else state.get(key)


@tool()
def set_state(context: ToolContext, key: str, value: Any) -> str:
    """Set one key of the thread's state (merged into what is there)."""
    from threads import services as thread_services

    thread_services.thread_state_update(
        thread=_context_thread(context),
        state={key: value},
        mode="merge",
        job_id=context.job_id,
        agent_id=context.agent_id,
    )
    return "ok"


@tool()
def publish_note(context: ToolContext, title: str, text: str) -> dict[str, Any]:
    """Publish a text note as a file artifact of the job, downloadable by the user; the same title updates it."""
    title = title.strip()
    if not title or len(title) > 200:
        raise ToolError("A note needs a title of 1 to 200 characters.")
    published = context.publish_artifact(
        name=title,
        kind="file",
        data={"title": title},
        content=text.encode(),
        media_type="text/plain; charset=utf-8",
    )
    return {"artifact": published["id"], "name": published["name"], "size": published["size"]}
