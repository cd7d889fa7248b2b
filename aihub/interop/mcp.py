"""The MCP server at ``/mcp``: aihub's agents as MCP tools and the caller's threads as resources.

Streamable HTTP (JSON-RPC 2.0 over POST), served by the official ``mcp`` SDK's low-level server and its session
manager in stateless mode: every request stands alone, so any ASGI process of a scaled-out deployment can answer
it, and the SDK negotiates the protocol version (the ``initialize`` handshake and the ``MCP-Protocol-Version``
header; an unsupported version gets the SDK's JSON-RPC error).

- ``/mcp`` serves the caller's default tenant (the one its API token is restricted to, else its default
  membership); ``/mcp/{tenant}`` another tenant the caller belongs to.
- Tools: one per enabled agent the caller may use, named by the agent's slug, taking ``message`` (and
  ``thread`` to continue one); a call stores the message, runs the agent's job (``jobs.services.job_submit``)
  and answers with the agent's reply, the thread and the job in ``structuredContent``.
- ``knowledge_search`` (with the knowledge app): hybrid, vector or keyword search over the collections the
  caller may read (or the ones it names); an agent whose slug is ``knowledge_search`` is not offered as a tool.
- Resources: the caller's threads (``aihub://{tenant}/threads/{id}``), read as JSON (the thread and its
  messages) and as a plain-text transcript.

Authentication is the API's: ``Authorization: Bearer`` with an API token, OAuth2 or SSO access token; without a
valid one the answer is 401 with a JSON-RPC error and a ``WWW-Authenticate`` challenge. A browser's ``Origin``
must be the server's own or one the CORS settings allow (403 otherwise); those get CORS headers and preflight
answers. ORM work runs through ``database_sync_to_async``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from channels.db import database_sync_to_async
from corsheaders.conf import conf as cors
from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.http.request import split_domain_port, validate_host
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from rest_framework import exceptions

from agents.models import Agent
from agents.selectors import agent_list
from aihub.access.authentication import BEARER_CHALLENGE, authenticate_bearer
from aihub.access.principal import ACTIVE_TENANT, READ_SCOPE, WRITE_SCOPE, Principal, principal_for
from aihub.interop.conversation import answer_text, job_events, turn_submit, usage_counts
from jobs.models import Job, JobStatus
from threads.content import text_of
from threads.models import Thread
from threads.selectors import message_list, thread_get, thread_list

logger = logging.getLogger(__name__)

MOUNT = "/mcp"
RESOURCE_PAGE = 100
"""Threads listed per ``resources/list`` page (newest first; ``nextCursor`` leads on)."""

TOOL_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1, "description": "What to say to the agent."},
        "thread": {
            "type": "string",
            "format": "uuid",
            "description": "A thread to continue (its id, from a previous call or resources/list); a new thread "
            "when absent.",
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}
TOOL_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "thread": {"type": "string", "format": "uuid"},
        "job": {"type": "string", "format": "uuid"},
        "status": {"type": "string"},
        "usage": {"type": "object"},
    },
    "required": ["answer", "thread", "job", "status"],
}


@dataclass(frozen=True)
class McpCaller:
    principal: Principal


_caller: contextvars.ContextVar[McpCaller | None] = contextvars.ContextVar("aihub_mcp_caller", default=None)


def _current() -> Principal:
    caller = _caller.get()
    if caller is None:  # the ASGI wrapper always sets it; a handler without it is a wiring bug
        raise MCPError(types.INTERNAL_ERROR, "No authenticated caller.")
    return caller.principal


def _thread_uri(thread: Thread, tenant_slug: str) -> str:
    return f"aihub://{tenant_slug}/threads/{thread.pk}"


# --- Tools: the agents ------------------------------------------------------------------------------------------


@database_sync_to_async
def _agents(principal: Principal) -> list[Agent]:
    return list(agent_list(principal=principal).filter(enabled=True))


def _tool(agent: Agent) -> types.Tool:
    about = agent.description or f"The {agent.name} agent."
    return types.Tool(
        name=agent.slug,
        title=agent.name,
        description=f"{about} Send a message (and a thread to continue one); answers with the agent's reply.",
        input_schema=TOOL_INPUT_SCHEMA,
        output_schema=TOOL_OUTPUT_SCHEMA,
    )


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    tools = [_tool(agent) for agent in await _agents(_current()) if agent.slug != KNOWLEDGE_SEARCH]
    if knowledge_available():
        tools.append(KNOWLEDGE_SEARCH_TOOL)
    return types.ListToolsResult(tools=tools)


class ToolInputError(Exception):
    """The tool was found but its input cannot be used: reported in the result (isError) for the model to see."""


@database_sync_to_async
def _agent_named(principal: Principal, slug: str) -> Agent | None:
    return agent_list(principal=principal).filter(slug=slug, enabled=True).first()


@database_sync_to_async
def _submit(principal: Principal, slug: str, message: str, thread_id: str | None) -> Job:
    agent = agent_list(principal=principal).filter(slug=slug, enabled=True).first()
    if agent is None:  # disabled since the check a moment ago
        raise ToolInputError(f"The agent {slug!r} is no longer available.")
    thread = None
    if thread_id is not None:
        try:
            thread = thread_get(principal=principal, thread_id=uuid.UUID(thread_id))
        except (ValueError, Http404) as exc:
            raise ToolInputError(f"No thread {thread_id!r} visible to you.") from exc
    return turn_submit(agent=agent, user=principal.user, content=message, thread=thread)


@database_sync_to_async
def _reload(job_id: uuid.UUID) -> Job:
    return Job.objects.get(pk=job_id)


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    principal = _current()
    if principal.scopes is not None and WRITE_SCOPE not in principal.scopes:
        raise MCPError(types.INVALID_REQUEST, f"This access token lacks the '{WRITE_SCOPE}' scope.")
    if params.name == KNOWLEDGE_SEARCH and knowledge_available():
        return await knowledge_search(principal, params.arguments or {})
    if await _agent_named(principal, params.name) is None:
        # A protocol error, not a tool result: the tool does not exist (for this caller).
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    arguments = params.arguments or {}
    message, thread_id = arguments.get("message"), arguments.get("thread")
    unknown = sorted(set(arguments) - {"message", "thread"})
    # Bad input is reported in the result (isError), where the model calling the tool can see and correct it.
    if not isinstance(message, str) or not message.strip():
        return _tool_error("'message' must be a non-empty string.")
    if thread_id is not None and not isinstance(thread_id, str):
        return _tool_error("'thread' must be a thread id (a UUID string).")
    if unknown:
        return _tool_error(f"Unknown arguments: {', '.join(unknown)}.")
    try:
        job = await _submit(principal, params.name, message, thread_id)
    except ToolInputError as exc:
        return _tool_error(str(exc))
    except (exceptions.APIException, DjangoValidationError) as exc:  # a disabled agent, a busy thread
        detail = exc.detail if isinstance(exc, exceptions.APIException) else "; ".join(exc.messages)
        return _tool_error(str(detail))
    async for event in job_events(job):
        if event["type"] == "job.requires_action":
            break  # waits for a person's answer (POST .../jobs/{id}/respond); the stream would wait with it
    job = await _reload(job.pk)
    prompt, completion, total = usage_counts(job)
    structured = {
        "answer": answer_text(job),
        "thread": str(job.thread_id),
        "job": str(job.pk),
        "status": job.status,
        "usage": {"input_tokens": prompt, "output_tokens": completion, "total_tokens": total},
    }
    if job.status == JobStatus.REQUIRES_ACTION:
        return types.CallToolResult(
            content=[
                types.TextContent(
                    text=f"The agent is waiting for an answer: respond with POST /api/v1/{principal.tenant.slug}/"
                    f"jobs/{job.pk}/respond, then read the thread."
                )
            ],
            structured_content=structured,
            is_error=True,
        )
    if job.status != JobStatus.SUCCEEDED:
        detail = (job.error or {}).get("detail") or f"The job ended {job.status}."
        return types.CallToolResult(
            content=[types.TextContent(text=f"The agent's job {job.status}: {detail}")],
            structured_content=structured,
            is_error=True,
        )
    return types.CallToolResult(content=[types.TextContent(text=structured["answer"])], structured_content=structured)


# --- knowledge_search: the caller's collections -----------------------------------------------------------------

KNOWLEDGE_SEARCH = "knowledge_search"
KNOWLEDGE_TOP_K_MAX = 20
KNOWLEDGE_SEARCH_TOOL = types.Tool(
    name=KNOWLEDGE_SEARCH,
    title="Knowledge search",
    description="Search the knowledge collections you may read (or the ones named) by meaning and by words; "
    "answers with the best chunks, their documents and scores.",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "description": "What to look for."},
            "collections": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Slugs of collections to search; all you may read when absent.",
            },
            "top_k": {"type": "integer", "minimum": 1, "maximum": KNOWLEDGE_TOP_K_MAX, "default": 5},
            "mode": {"type": "string", "enum": ["hybrid", "vector", "keyword"], "default": "hybrid"},
            "alpha": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "Hybrid: the meaning (vector) leg's weight against the words (keyword) leg's.",
            },
            "candidates": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,  # knowledge.search.MAX_CANDIDATES (not imported: knowledge is optional here)
                "description": "Hybrid: chunks each leg brings to the fusion, at least top_k.",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)


def knowledge_available() -> bool:
    return apps.is_installed("knowledge")


@database_sync_to_async
def _search(
    principal: Principal, query: str, slugs: list[str] | None, top_k: int, mode: str, tuning: dict[str, Any]
) -> list[dict[str, Any]]:
    from knowledge.search import search
    from knowledge.selectors import collection_get, collection_list

    if slugs:
        collections = [collection_get(principal=principal, slug=slug) for slug in dict.fromkeys(slugs)]
    else:
        collections = list(collection_list(principal=principal))
    if not collections:
        return []
    hits = search(collections=collections, query=query, mode=mode, top_k=top_k, **tuning)
    return [hit.as_dict() for hit in hits]


async def knowledge_search(principal: Principal, arguments: dict[str, Any]) -> types.CallToolResult:
    from knowledge.search import MAX_CANDIDATES, SearchError

    query, slugs = arguments.get("query"), arguments.get("collections")
    top_k, mode = arguments.get("top_k", 5), arguments.get("mode", "hybrid")
    tuning = {name: arguments[name] for name in ("alpha", "candidates") if arguments.get(name) is not None}
    unknown = sorted(set(arguments) - {"query", "collections", "top_k", "mode", "alpha", "candidates"})
    if not isinstance(query, str) or not query.strip():
        return _tool_error("'query' must be a non-empty string.")
    if slugs is not None and not (isinstance(slugs, list) and all(isinstance(slug, str) for slug in slugs)):
        return _tool_error("'collections' must be a list of collection slugs.")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= KNOWLEDGE_TOP_K_MAX:
        return _tool_error(f"'top_k' must be an integer from 1 to {KNOWLEDGE_TOP_K_MAX}.")
    if mode not in ("hybrid", "vector", "keyword"):
        return _tool_error("'mode' must be hybrid, vector or keyword.")
    alpha, candidates = tuning.get("alpha", 0.5), tuning.get("candidates", top_k)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        return _tool_error("'alpha' must be a number from 0 to 1.")
    if not isinstance(candidates, int) or isinstance(candidates, bool) or not top_k <= candidates <= MAX_CANDIDATES:
        return _tool_error(f"'candidates' must be an integer from top_k to {MAX_CANDIDATES}.")
    if unknown:
        return _tool_error(f"Unknown arguments: {', '.join(unknown)}.")
    try:
        hits = await _search(principal, query, slugs, top_k, mode, tuning)
    except Http404 as exc:
        return _tool_error(str(exc))
    except SearchError as exc:
        return _tool_error(str(exc))
    if not hits:
        text = "No matching chunks."
    else:
        text = "\n\n".join(
            f"[{index}] {hit['document']['title'] or hit['document']['id']} ({hit['collection']}, score "
            f"{hit['score']:.3f}):\n{hit['text']}"
            for index, hit in enumerate(hits, start=1)
        )
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content={"hits": hits})


# --- Resources: the threads -------------------------------------------------------------------------------------


@database_sync_to_async
def _thread_page(principal: Principal, offset: int) -> tuple[list[Thread], bool]:
    threads = list(thread_list(principal=principal)[offset : offset + RESOURCE_PAGE + 1])
    return threads[:RESOURCE_PAGE], len(threads) > RESOURCE_PAGE


async def list_resources(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
    principal = _current()
    cursor = params.cursor if params is not None else None
    offset = int(cursor) if cursor and cursor.isdigit() else 0
    threads, more = await _thread_page(principal, offset)
    resources = [
        types.Resource(
            uri=_thread_uri(thread, principal.tenant.slug),
            name=str(thread.pk),
            title=thread.title or f"Thread {thread.pk}",
            description=f"A thread of tenant {principal.tenant.slug}, started {thread.created_at:%Y-%m-%d %H:%M} UTC.",
            mime_type="application/json",
        )
        for thread in threads
    ]
    return types.ListResourcesResult(resources=resources, next_cursor=str(offset + RESOURCE_PAGE) if more else None)


@database_sync_to_async
def _thread_contents(principal: Principal, uri: str) -> list[types.TextResourceContents]:
    prefix = f"aihub://{principal.tenant.slug}/threads/"
    try:
        if not uri.startswith(prefix):
            raise ValueError(uri)
        thread = thread_get(principal=principal, thread_id=uuid.UUID(uri.removeprefix(prefix)))
    except (ValueError, Http404) as exc:
        raise MCPError(types.INVALID_PARAMS, f"Resource not found: {uri}", {"uri": uri}) from exc
    messages = [
        {
            "id": str(message.id),
            "role": message.role,
            "content": message.content,
            "agent": str(message.agent_id) if message.agent_id else None,
            "job": str(message.job_id) if message.job_id else None,
            "created_at": message.created_at.isoformat(),
        }
        for message in message_list(thread=thread)
    ]
    document = {
        "id": str(thread.pk),
        "tenant": principal.tenant.slug,
        "title": thread.title,
        "metadata": thread.metadata,
        "created_at": thread.created_at.isoformat(),
        "messages": messages,
    }
    transcript = "\n\n".join(f"{message['role']}: {text_of(message['content'])}" for message in messages)
    return [
        types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(document)),
        types.TextResourceContents(uri=uri, mime_type="text/plain", text=transcript),
    ]


async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=list(await _thread_contents(_current(), str(params.uri))))


async def list_resource_templates(
    ctx: Any, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    template = types.ResourceTemplate(
        uri_template="aihub://{tenant}/threads/{id}",
        name="thread",
        title="A thread",
        description="A thread of yours: its messages as JSON and as a plain-text transcript.",
        mime_type="application/json",
    )
    return types.ListResourceTemplatesResult(resource_templates=[template])


server: Server[Any] = Server(
    "aihub",
    title="aihub",
    instructions="Each tool is an agent: send it a message (and a thread to continue a conversation). "
    "Resources are your threads.",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_list_resources=list_resources,
    on_read_resource=read_resource,
    on_list_resource_templates=list_resource_templates,
)


# --- The ASGI application ---------------------------------------------------------------------------------------


class _Manager:
    """The SDK's session manager, run for the life of the process on the server's event loop.

    daphne has no ASGI lifespan, so the manager's ``run()`` context is entered by the first request, in a task
    of its own on that loop.
    """

    def __init__(self) -> None:
        self.manager: StreamableHTTPSessionManager | None = None
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self) -> StreamableHTTPSessionManager:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # First use on this loop (a test's own loop too: a manager is bound to the loop its task group runs
            # on), or the manager stopped: (re)start one. A manager cannot be run twice, so it is a new one.
            self._loop, self._ready = loop, asyncio.Event()
            self.manager = StreamableHTTPSessionManager(
                app=server,
                stateless=True,
                json_response=True,
                # Host checking is done below against Django's ALLOWED_HOSTS, like every other route.
                security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            )
            self._task = loop.create_task(self._run(self.manager, self._ready))
        assert self._ready is not None and self.manager is not None and self._task is not None
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            error = self._task.exception() if not self._task.cancelled() else None
            raise RuntimeError("The MCP session manager did not start.") from error
        return self.manager

    @staticmethod
    async def _run(manager: StreamableHTTPSessionManager, ready: asyncio.Event) -> None:
        try:
            async with manager.run():
                ready.set()
                await asyncio.Event().wait()
        except Exception:
            logger.exception("the MCP session manager stopped")
            raise


_manager = _Manager()


async def _json_error(send: Any, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


@database_sync_to_async
def _authenticate(raw: str, host: str, tenant_ref: str) -> Principal:
    user, auth = authenticate_bearer(raw, host=host)
    return principal_for(user=user, tenant_ref=tenant_ref, auth=auth)


def allowed_host(host: str) -> bool:
    """The Host header names this server (Django's ALLOWED_HOSTS): checked here for the doors outside Django."""
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def _allowed_origin(origin: str, *, scope: dict[str, Any], host: str) -> bool:
    """The browser origin may call: the server's own, or one the CORS settings allow (django-cors-headers')."""
    if origin == f"{scope.get('scheme', 'http')}://{host}":
        return True
    return (
        cors.CORS_ALLOW_ALL_ORIGINS
        or origin in cors.CORS_ALLOWED_ORIGINS
        or any(re.match(pattern, origin) for pattern in cors.CORS_ALLOWED_ORIGIN_REGEXES)
    )


def _with_cors_headers(send: Any, origin: str) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers += [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-expose-headers", ", ".join(cors.CORS_EXPOSE_HEADERS).encode()),
                (b"vary", b"Origin"),
            ]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def _preflight(send: Any, origin: str) -> None:
    headers = [
        (b"access-control-allow-origin", origin.encode()),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", ", ".join(cors.CORS_ALLOW_HEADERS).encode()),
        (b"access-control-max-age", str(cors.CORS_PREFLIGHT_MAX_AGE).encode()),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def mcp_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/mcp`` and ``/mcp/{tenant}``: check Host and Origin, authenticate, pick the tenant, hand over to the SDK.

    Outside Django, so the checks its middleware would make are made here: the Host against ALLOWED_HOSTS, and
    a browser's Origin (MCP requires servers to check it, against DNS rebinding) against the CORS settings,
    which also answer preflight requests.
    """
    rest = scope["path"].removeprefix(MOUNT).strip("/")
    if "/" in rest:
        await _json_error(send, 404, types.INVALID_REQUEST, "Not found: the MCP endpoint is /mcp or /mcp/{tenant}.")
        return
    host = _header(scope, b"host")
    if not allowed_host(host):
        await _json_error(send, 400, types.INVALID_REQUEST, "Invalid Host header.")
        return
    origin = _header(scope, b"origin")
    if origin:
        if not _allowed_origin(origin, scope=scope, host=host):
            await _json_error(send, 403, types.INVALID_REQUEST, f"Origin {origin} is not allowed.")
            return
        if scope.get("method") == "OPTIONS":
            await _preflight(send, origin)
            return
        send = _with_cors_headers(send, origin)
    scheme, _, raw = _header(scope, b"authorization").partition(" ")
    challenge = {"WWW-Authenticate": BEARER_CHALLENGE}
    if scheme.lower() != "bearer" or not raw.strip():
        await _json_error(send, 401, types.INVALID_REQUEST, "Authentication required: send a bearer token.", challenge)
        return
    try:
        principal = await _authenticate(raw.strip(), host, rest or ACTIVE_TENANT)
    except exceptions.AuthenticationFailed as exc:
        await _json_error(send, 401, types.INVALID_REQUEST, str(exc.detail), challenge)
        return
    except Http404 as exc:
        await _json_error(send, 404, types.INVALID_REQUEST, str(exc))
        return
    except PermissionDenied as exc:
        await _json_error(send, 403, types.INVALID_REQUEST, str(exc))
        return
    if principal.scopes is not None and not principal.scopes & {READ_SCOPE, WRITE_SCOPE}:
        await _json_error(send, 403, types.INVALID_REQUEST, f"This access token lacks the '{READ_SCOPE}' scope.")
        return
    manager = await _manager.get()
    token = _caller.set(McpCaller(principal=principal))
    try:
        await manager.handle_request({**scope, "path": MOUNT, "raw_path": MOUNT.encode()}, receive, send)
    finally:
        _caller.reset(token)


def with_mcp(http_app: Any) -> Any:
    """``http_app`` with ``/mcp`` (and ``/mcp/...``) answered by the MCP server."""

    async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path == MOUNT or path.startswith(MOUNT + "/"):
            await mcp_app(scope, receive, send)
        else:
            await http_app(scope, receive, send)

    return route
