"""The built-in offline model: deterministic, no network, so a fresh install has a working demo agent.

It answers by restating the last user message, streamed word by word. Offered tools, it calls one when the
message asks for it in a recognisable way ("calculate 2 * (3 + 4)", "what time is it", "note: <title> | <text>"
for ``publish_note``), then answers with the tool's result. The same input always gives the same output, which
the tests rely on.

Any offered tool is called by "use <tool name>", optionally followed by a JSON object of arguments
(``use lookup_order {"order_id": "A-1"}``); without one, or when it is not valid JSON, the arguments are {}.
That rule comes first, so tests can drive any tool (plug-ins, approval-gated ones) deterministically.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

from agents.providers.base import ChatRequest, Finished, StreamItem, TextDelta, ToolCall, Usage

OFFLINE_MODEL = "aihub-offline-1"

_CALCULATION = re.compile(r"(?:calculate|compute|what is)\s+([-+*/().\d\s^%]+)", re.IGNORECASE)
_USE = re.compile(r"\buse\s+([A-Za-z_][\w.-]*)(?:\s+(\{.*\}))?", re.IGNORECASE | re.DOTALL)
_TIME = re.compile(r"\b(time|date|today)\b", re.IGNORECASE)
_NOTE = re.compile(r"^\s*note:\s*(?P<title>[^|]+?)\s*\|\s*(?P<text>.+?)\s*$", re.IGNORECASE | re.DOTALL)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _tool_output(content: Any) -> str:
    try:
        value = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        value = content
    return value if isinstance(value, str) else json.dumps(value)


def _named_call(text: str, tool_names: set[str], messages: list[dict[str, Any]]) -> ToolCall | None:
    """``use <tool name> [{json arguments}]``, for any offered tool."""
    use = _USE.search(text)
    if use is None or use.group(1) not in tool_names:
        return None
    try:
        arguments = json.loads(use.group(2)) if use.group(2) else {}
    except ValueError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    name = use.group(1)
    # Deterministic ids, as for the other calls: the same conversation gives the same call id.
    digest = hashlib.sha256(f"{len(messages)}:{name}:{json.dumps(arguments)}".encode()).hexdigest()[:24]
    return ToolCall(id=f"call_{digest}", name=name, arguments=arguments)


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class OfflineProvider:
    def stream(self, request: ChatRequest) -> Iterator[StreamItem]:
        last = request.messages[-1] if request.messages else {"role": "user", "content": ""}
        tool_names = {tool["function"]["name"] for tool in request.tools}
        prompt_tokens = sum(_tokens(_text(m.get("content"))) for m in request.messages)

        if last.get("role") == "user":
            call = self._tool_call_for(_text(last.get("content")), tool_names, request.messages)
            if call is not None:
                yield call
                yield Usage(input_tokens=prompt_tokens, output_tokens=_tokens(json.dumps(call.arguments)))
                yield Finished("tool_calls")
                return
            answer = f"You said: {_text(last.get('content')).strip()}"
        elif last.get("role") == "tool":
            answer = f"The result is {_tool_output(last.get('content'))}."
        else:
            answer = "Hello from the offline model."

        words = answer.split(" ")
        for index, word in enumerate(words):
            yield TextDelta(word if index == 0 else f" {word}")
        yield Usage(input_tokens=prompt_tokens, output_tokens=len(words))
        yield Finished("stop")

    @staticmethod
    def _tool_call_for(text: str, tool_names: set[str], messages: list[dict[str, Any]]) -> ToolCall | None:
        if (named := _named_call(text, tool_names, messages)) is not None:
            return named
        arguments: dict[str, Any] | None = None
        name = ""
        # The note first: its text may mention a time or a sum that is not a question.
        if "publish_note" in tool_names and (note := _NOTE.match(text)):
            name, arguments = "publish_note", {"title": note.group("title"), "text": note.group("text")}
        elif "calculator" in tool_names and (match := _CALCULATION.search(text)):
            name, arguments = "calculator", {"expression": match.group(1).strip()}
        elif "current_time" in tool_names and _TIME.search(text):
            name, arguments = "current_time", {}
        if arguments is None:
            return None
        # Deterministic ids: the same conversation gives the same call id.
        digest = hashlib.sha256(f"{len(messages)}:{name}:{json.dumps(arguments)}".encode()).hexdigest()[:24]
        return ToolCall(id=f"call_{digest}", name=name, arguments=arguments)
