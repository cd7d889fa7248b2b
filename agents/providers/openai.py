"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LiteLLM, llama.cpp) through the official ``openai`` SDK.

Operators configure endpoints as ``ModelProvider`` rows in the Django admin: a name (the prefix of model ids,
``<name>/<model>``), the base URL, and the API key — preferably the name of an environment variable holding
it (``api_key_env``), so the key stays out of the database. Only operators can set the base URL (the API never
accepts one), which is why it is checked for a sane shape here rather than against an allowlist: ``http`` or
``https``, a host, and no credentials in the URL (they would end up in logs and error messages).

Retries are the SDK's own: exponential backoff with jitter on 408/409/429/5xx and connection failures, honouring
``Retry-After``; ``max_retries`` and ``timeout_seconds`` come from the row. Only the request is retried, never a
stream that already started delivering tokens: those tokens are already in the thread's event log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import openai
from openai._legacy_response import HttpxBinaryResponseContent

from agents.providers.base import (
    CLIENT_CONFIG_PROVIDER,
    ChatRequest,
    ClientConfig,
    Finished,
    ProviderError,
    StreamItem,
    TextDelta,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    from openai import Stream
    from openai.types.chat import ChatCompletionChunk

    from agents.models import ModelProvider

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Enough of a provider's error message to act on, not enough to flood a job's error with an HTML page.
_MAX_MESSAGE_CHARS = 300
_OWN_ARGUMENTS = frozenset({"model", "messages", "stream", "stream_options", "tools", "n"})


def checked_base_url(base_url: str, *, provider: str) -> str:
    """The base URL to call, or ProviderError when it is not a plain http(s) URL."""
    url = (base_url or DEFAULT_BASE_URL).strip()
    parts = urlsplit(url)
    if parts.username or parts.password:
        # Do not echo the URL: the credentials in it are what we must not show.
        raise ProviderError(
            f"Model provider {provider!r} has credentials in its base URL; put the key in api_key_env instead.",
            status=500,
            type_slug="provider-misconfigured",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderError(
            f"Model provider {provider!r} has base URL {url!r}; it must be an http:// or https:// URL.",
            status=500,
            type_slug="provider-misconfigured",
        )
    return url


@lru_cache(maxsize=32)
def _client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    # One client per configuration and process, so jobs reuse its connection pool (and TLS sessions). A changed
    # row is a different key; the old client simply ages out.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


@dataclass
class _PartialToolCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


CLIENT_CONFIG_TIMEOUT_SECONDS = 60.0
CLIENT_CONFIG_MAX_RETRIES = 1


class OpenAIProvider:
    gen_ai_provider = "openai"  # gen_ai.provider.name on chat spans (aihub.tracing): the API it speaks

    def __init__(self, *, name: str, client: openai.OpenAI, api_key: str = "", secrets: tuple[str, ...] = ()) -> None:
        self.name = name
        self.client = client
        # Kept only to scrub them from anything the provider echoes back into an error message.
        self._secrets = tuple(secret for secret in (api_key, *secrets) if secret and len(secret) >= 4)

    @classmethod
    def from_client_config(cls, config: ClientConfig) -> OpenAIProvider:
        """A provider for a request's own credentials. A client of its own, not the per-process cache of
        ``_client``: the key must not outlive the job in this process's memory."""
        base_url = checked_base_url(config.base_url, provider=CLIENT_CONFIG_PROVIDER)
        client = openai.OpenAI(
            base_url=base_url,
            api_key=config.api_key,
            default_headers=dict(config.default_headers) or None,
            timeout=CLIENT_CONFIG_TIMEOUT_SECONDS,
            max_retries=CLIENT_CONFIG_MAX_RETRIES,
        )
        return cls(name=CLIENT_CONFIG_PROVIDER, client=client, secrets=config.secrets)

    @classmethod
    def from_row(cls, row: ModelProvider) -> OpenAIProvider:
        """A provider for a ``ModelProvider`` row; ProviderError when the row cannot work (never shows the key)."""
        base_url = checked_base_url(row.base_url, provider=row.name)
        if row.api_key_env:
            api_key = os.environ.get(row.api_key_env, "").strip()
            if not api_key:
                raise ProviderError(
                    f"Model provider {row.name!r} takes its API key from the environment variable "
                    f"{row.api_key_env}, which is not set in the worker's environment.",
                    status=500,
                    type_slug="provider-misconfigured",
                )
        else:
            api_key = row.api_key.strip()
            if not api_key:
                raise ProviderError(
                    f"Model provider {row.name!r} has no API key: name an environment variable in api_key_env "
                    "(or set the key field; any placeholder for endpoints without authentication).",
                    status=500,
                    type_slug="provider-misconfigured",
                )
        client = _client(base_url, api_key, float(row.timeout_seconds), int(row.max_retries))
        return cls(name=row.name, client=client, api_key=api_key)

    def list_models(self, *, timeout: float) -> list[dict[str, Any]]:
        """The provider's model list (``GET /models``): ``{"id", "owned_by", "context_length"}`` per model.

        No retries and a short timeout: the catalogue asks while a client waits, and keeps its last good copy
        when this fails (ProviderError).
        """
        try:
            page = self.client.with_options(timeout=timeout, max_retries=0).models.list()
            listed = [model for model in page if getattr(model, "id", None)]
        except openai.OpenAIError as exc:
            raise self._request_error(exc) from exc
        except (ValueError, TypeError, AttributeError) as exc:
            raise self._bad_response(f"a malformed model list ({type(exc).__name__})") from exc
        models = []
        for model in listed:
            extra = model.model_extra or {}
            # Servers say it differently: vLLM max_model_len, LiteLLM/OpenRouter context_length or context_window.
            length = next(
                (extra[key] for key in ("context_length", "context_window", "max_model_len") if key in extra), None
            )
            models.append(
                {
                    "id": str(model.id),
                    "owned_by": str(getattr(model, "owned_by", "") or ""),
                    "context_length": int(length) if isinstance(length, int | float) and length > 0 else None,
                }
            )
        return models

    def passthrough(
        self, path: str, *, body: dict[str, Any], file: tuple[str, bytes, str] | None = None
    ) -> tuple[bytes, str]:
        """POST ``body`` (with ``file`` as multipart) to the provider's ``path`` (``/images/generations``,
        ``/audio/transcriptions``, ``/audio/speech``) and return its answer's bytes and content type, unchanged.

        The SDK's retries and timeouts apply. A provider's 4xx refusal (a bad voice, an unsupported size) is the
        caller's to fix: ProviderError with status 400 and the provider's words; anything else as for chat.
        """
        options: Any = {}  # the SDK's RequestOptions
        files = None
        if file is not None:
            files = [("file", file)]
            options["headers"] = {"Content-Type": "multipart/form-data"}
        try:
            response = self.client.post(
                path, cast_to=HttpxBinaryResponseContent, body=body, files=files, options=options
            )
        except openai.APIStatusError as exc:
            if 400 <= exc.status_code < 500 and exc.status_code not in (401, 403, 408, 409, 429):
                raise ProviderError(
                    f"Model provider {self.name!r} refused the request: {self._status_message(exc)}",
                    status=400,
                    type_slug="provider-refused",
                ) from exc
            raise self._request_error(exc) from exc
        except openai.OpenAIError as exc:
            raise self._request_error(exc) from exc
        content_type = response.response.headers.get("content-type", "application/octet-stream")
        return response.content, content_type

    def stream(self, request: ChatRequest) -> Iterator[StreamItem]:
        # The runtime owns the shape of the call; an agent's parameters tune the model, they cannot redefine it.
        extra = {key: value for key, value in request.parameters.items() if key not in _OWN_ARGUMENTS}
        if request.tools:
            # Omitted rather than [] when there are none: some compatible servers reject an empty list.
            extra["tools"] = request.tools
        # Parameters are free-form per model and server (temperature, max_tokens, top_p, ...), which the SDK's
        # typed overloads cannot express; stream=True always returns a Stream.
        create = cast("Callable[..., Stream[ChatCompletionChunk]]", self.client.chat.completions.create)
        try:
            chunks = create(
                model=request.model,
                messages=request.messages,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
        except openai.OpenAIError as exc:
            raise self._request_error(exc) from exc
        try:
            yield from self._read(chunks)
        finally:
            # Also when the consumer stops early (a cancelled job): give the connection back at once.
            chunks.close()

    def _read(self, chunks: Iterable[Any]) -> Iterator[StreamItem]:
        calls: dict[int, _PartialToolCall] = {}
        usage: Usage | None = None
        finish_reason = ""
        received = 0
        try:
            for chunk in chunks:
                received += 1
                if (chunk_usage := getattr(chunk, "usage", None)) is not None:
                    usage = Usage(
                        input_tokens=int(getattr(chunk_usage, "prompt_tokens", 0) or 0),
                        output_tokens=int(getattr(chunk_usage, "completion_tokens", 0) or 0),
                    )
                for choice in getattr(chunk, "choices", None) or []:
                    if getattr(choice, "index", 0) != 0:
                        continue  # n > 1 is not something the runtime asks for
                    delta = getattr(choice, "delta", None)
                    if delta is not None:
                        if content := getattr(delta, "content", None):
                            yield TextDelta(content)
                        for position, fragment in enumerate(getattr(delta, "tool_calls", None) or []):
                            self._add_fragment(calls, position, fragment)
                    if reason := getattr(choice, "finish_reason", None):
                        finish_reason = reason
        except openai.APITimeoutError as exc:
            raise self._interrupted("it stopped sending for longer than the timeout") from exc
        except openai.APIConnectionError as exc:
            raise self._interrupted("the connection broke") from exc
        except openai.APIError as exc:
            # An error event inside the stream (the SDK raises those as APIError without a status).
            raise ProviderError(
                f"Model provider {self.name!r} reported an error mid-stream: {self._scrub(exc.message)}",
                type_slug="provider-error",
            ) from exc
        except ValueError as exc:
            # json.JSONDecodeError: a `data:` line that is not JSON.
            raise self._bad_response("a stream event that is not JSON") from exc
        if not received:
            raise self._bad_response("no chat completion chunks (is the base URL an OpenAI-compatible /v1?)")
        if not finish_reason:
            raise self._interrupted("it ended before the model finished")
        # Tool calls are handed over only now: their arguments are complete only once the stream is.
        for index in sorted(calls):
            yield self._tool_call(index, calls[index])
        if usage is not None:
            yield usage
        yield Finished(finish_reason)

    @staticmethod
    def _add_fragment(calls: dict[int, _PartialToolCall], position: int, fragment: Any) -> None:
        # The index says which call a fragment continues; servers that send whole calls may leave it out.
        index = getattr(fragment, "index", None)
        partial = calls.setdefault(position if index is None else int(index), _PartialToolCall())
        if call_id := getattr(fragment, "id", None):
            partial.id = call_id
        function = getattr(fragment, "function", None)
        if function is not None:
            if name := getattr(function, "name", None):
                partial.name = name
            if arguments := getattr(function, "arguments", None):
                partial.arguments.append(arguments)

    def _tool_call(self, index: int, partial: _PartialToolCall) -> ToolCall:
        text = "".join(partial.arguments).strip() or "{}"
        try:
            arguments = json.loads(text)
        except ValueError:
            arguments = None
        if not partial.name or not isinstance(arguments, dict):
            raise ProviderError(
                f"Model provider {self.name!r} sent a malformed tool call"
                f" ({partial.name or 'no function name'}: arguments are not a JSON object).",
                type_slug="provider-bad-response",
            )
        return ToolCall(id=partial.id or f"call_{index}", name=partial.name, arguments=arguments)

    def _request_error(self, exc: openai.OpenAIError) -> ProviderError:
        """What the SDK raised for the request (after its retries), as the job will report it."""
        # Subclasses first: APITimeoutError is an APIConnectionError, RateLimitError an APIStatusError.
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(
                f"Model provider {self.name!r} did not answer within its timeout.",
                status=504,
                type_slug="provider-timeout",
            )
        if isinstance(exc, openai.RateLimitError):
            return ProviderError(
                f"Model provider {self.name!r} is rate limiting requests: {self._status_message(exc)}",
                status=429,
                type_slug="provider-rate-limited",
            )
        if isinstance(exc, openai.APIStatusError):
            return ProviderError(
                f"Model provider {self.name!r} answered {exc.status_code}: {self._status_message(exc)}",
                status=502,
                type_slug="provider-error",
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(
                f"Model provider {self.name!r} could not be reached at {self.client.base_url}.",
                status=502,
                type_slug="provider-unreachable",
            )
        return ProviderError(f"Model provider {self.name!r} failed: {self._scrub(str(exc))}")

    def _status_message(self, exc: openai.APIStatusError) -> str:
        # The provider's own words when its body is the usual {"error": {"message": ...}}, else the start of it.
        body = exc.body
        if isinstance(body, dict):
            error = body.get("error", body)
            message = error.get("message") if isinstance(error, dict) else error
            if message:
                return self._scrub(str(message))
        try:
            text = exc.response.text
        except Exception:  # the body may be unreadable (already streamed, or broken)
            text = ""
        return self._scrub(text.strip() or exc.response.reason_phrase or "no message")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = " ".join(text.split())
        return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"

    def _interrupted(self, why: str) -> ProviderError:
        return ProviderError(
            f"The stream from model provider {self.name!r} was interrupted: {why}.",
            status=502,
            type_slug="provider-stream-interrupted",
        )

    def _bad_response(self, what: str) -> ProviderError:
        return ProviderError(
            f"Model provider {self.name!r} answered with {what}.", status=502, type_slug="provider-bad-response"
        )
