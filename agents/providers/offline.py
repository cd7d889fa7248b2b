"""The built-in offline model: deterministic, no network, so a fresh install has a working demo agent.

It answers by restating the last user message, streamed word by word. Offered tools, it calls one when the
message asks for it in a recognisable way ("calculate 2 * (3 + 4)", "what time is it", "note: <title> | <text>"
for ``publish_note``), then answers with the tool's result. The same input always gives the same output, which
the tests rely on.

Any offered tool is called by "use <tool name>", optionally followed by a JSON object of arguments
(``use lookup_order {"order_id": "A-1"}``); without one, or when it is not valid JSON, the arguments are {}.
That rule comes first, so tests can drive any tool (plug-ins, approval-gated ones) deterministically.

Given numbered sources (a ``<sources>`` block, as the ``rag`` class sends, or a ``knowledge_search`` result), it
answers from them: "According to [1] <title>: <its first sentence> See also [2], [3]."

Given memories (the ``<memories>`` block agents.memory adds to the system prompt), it says what it remembers
after its answer: "You said: hi I remember: the user likes tea; the office is in Bern." Offered ``remember``,
"remember: <text>" (or "remember that <text>") calls it.

Attachments (agents.runtime.user_content's markers) are not restated: the answer lists them instead, e.g.
"You said: what is this? Attached: invoice.pdf (application/pdf, 120 words); cat.png (an image I can see)."
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from typing import Any

from agents.providers.base import ChatRequest, Finished, StreamItem, TextDelta, ToolCall, Usage

OFFLINE_MODEL = "aihub-offline-1"

_CALCULATION = re.compile(r"(?:calculate|compute|what is)\s+([-+*/().\d\s^%]+)", re.IGNORECASE)
_USE = re.compile(r"\buse\s+([A-Za-z_][\w.-]*)(?:\s+(\{.*\}))?", re.IGNORECASE | re.DOTALL)
_TIME = re.compile(r"\b(time|date|today)\b", re.IGNORECASE)
_REMEMBER = re.compile(r"^\s*remember(?::|\s+that\b)\s*(?P<text>.+?)\s*$", re.IGNORECASE | re.DOTALL)
_MEMORIES = re.compile(r"<memories>\n?(?P<body>.*?)</memories>", re.DOTALL)
_NOTE = re.compile(r"^\s*note:\s*(?P<title>[^|]+?)\s*\|\s*(?P<text>.+?)\s*$", re.IGNORECASE | re.DOTALL)


# The markers agents.runtime.user_content puts around attachments.
_ATTACHMENT = re.compile(
    r'<(?P<tag>attachment|image) name="(?P<name>[^"]*)"(?: media_type="(?P<type>[^"]*)")?(?P<attrs>[^>]*?)'
    r"(?:/>|>(?P<body>.*?)</attachment>)",
    re.DOTALL,
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _attachments(text: str) -> tuple[str, list[str]]:
    """The message without its attachments, and a deterministic description of each attachment."""
    described = []
    for match in _ATTACHMENT.finditer(text):
        name = html.unescape(match.group("name")) or "unnamed"
        attrs = match.group("attrs")
        if "unavailable=" in attrs:
            described.append(f"{name} (no longer available)")
        elif match.group("tag") == "image":
            described.append(f"{name} (an image I {'cannot' if 'omitted=' in attrs else 'can'} see)")
        else:
            words = len((match.group("body") or "").split())
            described.append(f"{name} ({html.unescape(match.group('type') or '')}, {words} words)")
    return " ".join(_ATTACHMENT.sub(" ", text).split()), described


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


# The numbered sources a retrieval agent puts before the question (agents.retrieval.sources_prompt).
_SOURCES = re.compile(r"<sources>\n?(?P<body>.*?)</sources>", re.DOTALL)
_SOURCE = re.compile(r"^\[(?P<n>\d+)\] (?P<title>[^:\n]*): (?P<text>.*)$", re.MULTILINE)


def _first_sentence(text: str, limit: int = 200) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + " ..."


def _cited_answer(text: str) -> str | None:
    """Answering from numbered sources: the first source's first sentence, cited, and the others named."""
    block = _SOURCES.search(text)
    if block is None:
        return None
    sources = list(_SOURCE.finditer(block.group("body")))
    if not sources:
        return "I found nothing about that in the knowledge collections."
    first = sources[0]
    answer = f"According to [{first['n']}] {first['title']}: {_first_sentence(first['text'])}"
    if len(sources) > 1:
        answer += " See also " + ", ".join(f"[{s['n']}]" for s in sources[1:]) + "."
    return answer


def _retrieval_answer(content: Any) -> str | None:
    """A knowledge_search result (agents.retrieval): answered like numbered sources."""
    try:
        value = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("type") != "retrieval":
        return None
    hits = value.get("hits") or []
    lines = [f"[{n}] {hit['document']['title']}: {' '.join(hit['text'].split())}" for n, hit in enumerate(hits, 1)]
    return _cited_answer("<sources>\n" + "\n".join(lines) + "\n</sources>")


def _remembered(messages: list[dict[str, Any]]) -> list[str]:
    """The memories in the system prompt's ``<memories>`` block (agents.memory.memories_prompt), in order."""
    system = next((_text(m.get("content")) for m in messages if m.get("role") == "system"), "")
    block = _MEMORIES.search(system)
    if block is None:
        return []
    return [line[2:].strip() for line in block.group("body").splitlines() if line.startswith("- ")]


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class OfflineProvider:
    gen_ai_provider = "aihub.offline"  # gen_ai.provider.name on chat spans (aihub.tracing)

    def stream(self, request: ChatRequest) -> Iterator[StreamItem]:
        last = request.messages[-1] if request.messages else {"role": "user", "content": ""}
        tool_names = {tool["function"]["name"] for tool in request.tools}
        prompt_tokens = sum(_tokens(_text(m.get("content"))) for m in request.messages)

        if last.get("role") == "user":
            # What the user wrote decides; an attached document's text never calls a tool.
            said, attached = _attachments(_text(last.get("content")))
            call = self._tool_call_for(said, tool_names, request.messages)
            if call is not None:
                yield call
                yield Usage(input_tokens=prompt_tokens, output_tokens=_tokens(json.dumps(call.arguments)))
                yield Finished("tool_calls")
                return
            answer = f"You said: {said.strip()}" if not attached or said.strip() else "You sent attachments."
            if (cited := _cited_answer(_text(last.get("content")))) is not None:
                answer = cited
            if attached:
                answer += f" Attached: {'; '.join(attached)}."
            if remembered := _remembered(request.messages):
                answer += f" I remember: {'; '.join(m.rstrip('.') for m in remembered)}."
        elif last.get("role") == "tool":
            answer = _retrieval_answer(last.get("content")) or f"The result is {_tool_output(last.get('content'))}."
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
        elif "remember" in tool_names and (memory := _REMEMBER.match(text)):
            name, arguments = "remember", {"text": memory.group("text")}
        elif "calculator" in tool_names and (match := _CALCULATION.search(text)):
            name, arguments = "calculator", {"expression": match.group(1).strip()}
        elif "current_time" in tool_names and _TIME.search(text):
            name, arguments = "current_time", {}
        if arguments is None:
            return None
        # Deterministic ids: the same conversation gives the same call id.
        digest = hashlib.sha256(f"{len(messages)}:{name}:{json.dumps(arguments)}".encode()).hexdigest()[:24]
        return ToolCall(id=f"call_{digest}", name=name, arguments=arguments)
