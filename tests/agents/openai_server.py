"""A loopback OpenAI-compatible server: real HTTP on 127.0.0.1, speaking the chat completions wire format.

Tests script what it answers, one reply per request, and read back what it received::

    openai_server.reply_status(429, retry_after="0.01")
    openai_server.reply_text("Hello there", chunks=["Hello", " there"])
    ...  # run the code under test against openai_server.base_url
    assert len(openai_server.requests) == 2

Streaming answers are Server-Sent Events over chunked transfer encoding, as api.openai.com sends them: a role
delta first, content or tool-call deltas (a call's id and name first, then its arguments in fragments), a chunk
with the finish reason, a usage chunk with no choices when ``stream_options.include_usage`` asks for one, then
``data: [DONE]``. The faults are real too: slow answers, HTTP errors with ``Retry-After``, garbage, and a
stream whose socket is closed half-way. A request nothing was scripted for gets a 500 that says so, except on
``/v1/images/generations``, ``/v1/audio/transcriptions`` and ``/v1/audio/speech``: they give a fixed answer
(``MEDIA_ANSWERS``) unless a fault (a status, a slow reply, garbage) is scripted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ScriptedToolCall:
    name: str
    arguments: dict[str, Any] | str
    id: str = ""
    # How many pieces the arguments' JSON text arrives in, as models stream it.
    fragments: int = 3

    @property
    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Answer:
    """A model answer: text, tool calls or both; streamed or whole, as the request asks."""

    chunks: list[str] = field(default_factory=list)
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    prompt_tokens: int = 11
    completion_tokens: int = 7
    # "" sends no finish reason at all (the stream still ends with [DONE]).
    finish_reason: str = "stop"
    # Close the socket after this many content chunks, without finishing the response.
    drop_after: int | None = None


@dataclass(frozen=True)
class Status:
    status: int
    message: str = ""
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Garbage:
    body: bytes
    content_type: str = "text/event-stream"


@dataclass(frozen=True)
class Slow:
    """Wait before answering at all (the client's timeout should fire first)."""

    seconds: float
    then: Answer | Status | Garbage = field(default_factory=lambda: Answer(chunks=["late"]))


Reply = Answer | Status | Garbage | Slow


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


class OpenAIServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        # What GET /v1/models answers: the models' objects (extra keys such as context_length pass through), or a
        # Status / Garbage to make the list fail. Set it directly: ``openai_server.model_list = Status(503)``.
        self.model_list: list[dict[str, Any]] | Status | Garbage = []
        self._lock = threading.Lock()
        # Set on close, so a handler sleeping through a slow reply lets go at once.
        self.closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll interval: shutting down waits for the next poll, and every test shuts one down.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-loopback", daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # --- scripting ----------------------------------------------------------------------------------------

    def reply(self, *replies: Reply) -> OpenAIServer:
        with self._lock:
            self._replies.extend(replies)
        return self

    def reply_text(self, text: str, *, chunks: list[str] | None = None, **answer: Any) -> OpenAIServer:
        """Answer with text, streamed in ``chunks`` (by default word by word)."""
        if chunks is None:
            words = text.split(" ")
            chunks = [word if index == 0 else f" {word}" for index, word in enumerate(words)]
        assert "".join(chunks) == text, "the chunks must add up to the text"
        return self.reply(Answer(chunks=chunks, **answer))

    def reply_tool_calls(self, *calls: ScriptedToolCall, **answer: Any) -> OpenAIServer:
        return self.reply(Answer(tool_calls=list(calls), finish_reason="tool_calls", **answer))

    def reply_status(self, status: int, message: str = "", *, retry_after: str | None = None) -> OpenAIServer:
        return self.reply(Status(status, message or f"scripted {status}", retry_after=retry_after))

    def reply_slowly(self, seconds: float) -> OpenAIServer:
        return self.reply(Slow(seconds))

    def reply_garbage(self, body: bytes, *, content_type: str = "text/event-stream") -> OpenAIServer:
        return self.reply(Garbage(body, content_type))

    def reply_half_stream(self, chunks: list[str], *, drop_after: int) -> OpenAIServer:
        """Stream ``drop_after`` of the chunks, then close the socket mid-response."""
        return self.reply(Answer(chunks=chunks, drop_after=drop_after))

    def next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    @property
    def unused_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# --- images and audio: fixed answers (what tests check is that they pass through aihub unchanged) ---------------

IMAGE_BYTES = b"\x89PNG\r\n\x1a\nloopback image"
SPEECH_BYTES = b"ID3\x04loopback speech"
IMAGE_USAGE = {"input_tokens": 12, "output_tokens": 34}
TRANSCRIPTION_USAGE = {"input_tokens": 5, "output_tokens": 3}


def _image_answer(body: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    count = int(body.get("n") or 1)
    data = [{"b64_json": base64.b64encode(IMAGE_BYTES).decode(), "revised_prompt": body.get("prompt")}] * count
    answer = {"created": 1700000000, "data": data, "usage": {**IMAGE_USAGE, "total_tokens": 46}}
    return json.dumps(answer).encode(), "application/json"


def _transcription_answer(body: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    # The multipart body is not JSON: the answer says how many bytes the request carried.
    text = f"loopback heard {len(raw)} bytes"
    if b'name="response_format"\r\n\r\ntext' in raw:
        return text.encode(), "text/plain; charset=utf-8"
    usage = {"type": "tokens", **TRANSCRIPTION_USAGE, "total_tokens": 8}
    return json.dumps({"text": text, "usage": usage}).encode(), "application/json"


def _speech_answer(body: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    return SPEECH_BYTES + str(body.get("input", "")).encode(), "audio/mpeg"


MEDIA_ANSWERS = {
    "/v1/images/generations": _image_answer,
    "/v1/audio/transcriptions": _transcription_answer,
    "/v1/audio/speech": _speech_answer,
}


def _handler_for(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_ChatCompletionsHandler):
        loopback = server

    return Handler


class _ChatCompletionsHandler(BaseHTTPRequestHandler):
    # HTTP/1.1: keep-alive and chunked transfer encoding, as the real API (and so the SDK's connection pool).
    protocol_version = "HTTP/1.1"
    loopback: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def handle(self) -> None:
        # The client may close (or reset) a keep-alive connection while we wait for its next request.
        with contextlib.suppress(OSError):
            super().handle()

    def do_GET(self) -> None:
        self.loopback.record(
            RecordedRequest(
                method="GET", path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body={}
            )
        )
        if self.path.rstrip("/") != "/v1/models":
            self._send_status(Status(404, f"No route {self.path}"))
            return
        listed = self.loopback.model_list
        if isinstance(listed, Status):
            self._send_status(listed)
        elif isinstance(listed, Garbage):
            self._send_bytes(200, listed.body, listed.content_type)
        else:
            models = [{"object": "model", "created": 0, "owned_by": "loopback", **model} for model in listed]
            self._send_json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"unparsed": raw.decode(errors="replace")}
        self.loopback.record(
            RecordedRequest(
                method="POST",
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
            )
        )
        media = MEDIA_ANSWERS.get(self.path.rstrip("/"))
        if media is not None:
            # Images and audio: a scripted fault when there is one, else the route's fixed answer.
            fault = self.loopback.next_reply()
            with contextlib.suppress(OSError):
                if fault is not None:
                    self._send(fault, body)
                else:
                    self._send_bytes(200, *media(body, raw))
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_status(Status(404, f"No route {self.path}"))
            return
        reply = self.loopback.next_reply()
        if reply is None:
            # Loud, and not retried, so a test that makes a request it did not expect fails clearly.
            self._send_status(Status(500, "nothing scripted for this request", headers={"x-should-retry": "false"}))
            return
        # The client may have given up (its timeout), or we dropped the connection on purpose.
        with contextlib.suppress(OSError):
            self._send(reply, body)

    # --- replies ------------------------------------------------------------------------------------------

    def _send(self, reply: Reply, body: dict[str, Any]) -> None:
        if isinstance(reply, Slow):
            if self.loopback.closing.wait(reply.seconds):
                self.close_connection = True
                return
            self._send(reply.then, body)
        elif isinstance(reply, Status):
            self._send_status(reply)
        elif isinstance(reply, Garbage):
            self._send_bytes(200, reply.body, reply.content_type)
        elif body.get("stream"):
            self._stream(reply, body)
        else:
            self._send_json(200, self._completion(reply, body))

    def _send_bytes(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(data).encode(), "application/json", headers)

    def _send_status(self, reply: Status) -> None:
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        error_type = "rate_limit_exceeded" if reply.status == 429 else "server_error"
        self._send_json(
            reply.status,
            {"error": {"message": reply.message, "type": error_type, "param": None, "code": None}},
            headers,
        )

    @staticmethod
    def _usage(reply: Answer) -> dict[str, int]:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }

    @staticmethod
    def _call_id(call: ScriptedToolCall, index: int) -> str:
        return call.id or f"call_loopback_{index}"

    def _completion(self, reply: Answer, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.chunks) or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._call_id(call, index),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_text},
                }
                for index, call in enumerate(reply.tool_calls)
            ]
        return {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason or None}
            ],
            "usage": self._usage(reply),
        }

    def _stream(self, reply: Answer, body: dict[str, Any]) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": "chatcmpl-loopback",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", ""),
                "system_fingerprint": None,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage
            return data

        def delta(content: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return chunk([{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}])

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._event(delta({"role": "assistant", "content": "", "refusal": None}))
        for sent, text in enumerate(reply.chunks):
            if reply.drop_after is not None and sent >= reply.drop_after:
                self._drop()
                return
            self._event(delta({"content": text}))
        for index, call in enumerate(reply.tool_calls):
            opening = {
                "index": index,
                "id": self._call_id(call, index),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            self._event(delta({"tool_calls": [opening]}))
            for fragment in _split(call.arguments_text, call.fragments):
                self._event(delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
        if reply.drop_after is not None:
            self._drop()
            return
        self._event(delta({}, reply.finish_reason or None))
        if include_usage:
            self._event(chunk([], self._usage(reply)))
        self._sse("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def _event(self, data: dict[str, Any]) -> None:
        self._sse(json.dumps(data))

    def _sse(self, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        # No terminating chunk: the client sees the connection end in the middle of the response body.
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
