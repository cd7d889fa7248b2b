"""The ASGI side of the A2A door: ``/a2a/{tenant}/{agent}`` routing, the Host check, authentication, the card.

The JSON-RPC endpoint is the SDK's Starlette route (``create_jsonrpc_routes``, with the 0.3 method names too);
the caller is authenticated here first, exactly as ``/mcp`` does it (``Authorization: Bearer`` with an API
token, OAuth2 or SSO access token), and handed to :class:`~aihub.interop.a2a.handler.JobRequestHandler` through
the request's scope. The public card needs no credentials and says nothing the agent's name and description do
not (aihub.interop.a2a.card).
"""

from __future__ import annotations

import json
import re
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP, InvalidRequestError
from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from starlette.applications import Starlette

from agents.models import Agent
from agents.selectors import agent_list
from aihub.access.authentication import BEARER_CHALLENGE
from aihub.access.principal import READ_SCOPE, WRITE_SCOPE
from aihub.interop.a2a.card import MOUNT, agent_card
from aihub.interop.a2a.handler import CALLER, Caller, CallerContextBuilder, JobRequestHandler
from aihub.interop.mcp import _authenticate, _header, _json_error, allowed_host

_PATH = re.compile(r"^/a2a/(?P<tenant>[-a-zA-Z0-9_]+)/(?P<agent>[-a-zA-Z0-9_]+)(?P<rest>/.*)?$")
INVALID_REQUEST = JSON_RPC_ERROR_CODE_MAP[InvalidRequestError]

rpc = Starlette(
    routes=create_jsonrpc_routes(
        JobRequestHandler(),
        rpc_url="/a2a/{tenant}/{agent}",
        context_builder=CallerContextBuilder(),
        enable_v0_3_compat=True,
    )
)


@database_sync_to_async
def _public_agent(tenant_slug: str, agent_slug: str) -> Agent | None:
    return Agent.objects.filter(tenant__slug=tenant_slug, tenant__is_active=True, slug=agent_slug, enabled=True).first()


@database_sync_to_async
def _caller_agent(principal: Any, agent_slug: str) -> Agent | None:
    return agent_list(principal=principal).filter(slug=agent_slug, enabled=True).first()


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


async def _card(scope: dict[str, Any], send: Any, tenant_slug: str, agent_slug: str, base_url: str) -> None:
    agent = await _public_agent(tenant_slug, agent_slug)
    if agent is None:
        await _json(send, 404, {"detail": f"No A2A agent at {MOUNT}/{tenant_slug}/{agent_slug}."})
        return
    card = agent_card(agent, tenant_slug=tenant_slug, base_url=base_url)
    await _json(send, 200, agent_card_to_dict(card))


async def a2a_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /a2a/{tenant}/{agent}/.well-known/agent-card.json`` and ``POST /a2a/{tenant}/{agent}``."""
    match = _PATH.match(scope["path"])
    if match is None:
        await _json_error(send, 404, INVALID_REQUEST, "Not found: A2A agents are at /a2a/{tenant}/{agent}.")
        return
    host = _header(scope, b"host")
    if not allowed_host(host):
        await _json_error(send, 400, INVALID_REQUEST, "Invalid Host header.")
        return
    tenant_slug, agent_slug, rest = match["tenant"], match["agent"], match["rest"] or ""
    base_url = f"{scope.get('scheme', 'http')}://{host}"
    method = scope.get("method")
    if rest == AGENT_CARD_WELL_KNOWN_PATH and method in ("GET", "HEAD"):
        await _card(scope, send, tenant_slug, agent_slug, base_url)
        return
    if rest.strip("/") or method != "POST":
        await _json_error(send, 404 if rest.strip("/") else 405, INVALID_REQUEST, "The A2A endpoint takes POST.")
        return
    scheme, _, raw = _header(scope, b"authorization").partition(" ")
    challenge = {"WWW-Authenticate": BEARER_CHALLENGE}
    if scheme.lower() != "bearer" or not raw.strip():
        await _json_error(send, 401, INVALID_REQUEST, "Authentication required: send a bearer token.", challenge)
        return
    try:
        principal = await _authenticate(raw.strip(), host, tenant_slug)
    except exceptions.AuthenticationFailed as exc:
        await _json_error(send, 401, INVALID_REQUEST, str(exc.detail), challenge)
        return
    except (Http404, PermissionDenied):
        # Another tenant's agents look like no agents at all.
        await _json_error(send, 404, INVALID_REQUEST, f"No A2A agent at {MOUNT}/{tenant_slug}/{agent_slug}.")
        return
    if principal.scopes is not None and not principal.scopes & {READ_SCOPE, WRITE_SCOPE}:
        await _json_error(send, 403, INVALID_REQUEST, f"This access token lacks the '{READ_SCOPE}' scope.")
        return
    agent = await _caller_agent(principal, agent_slug)
    if agent is None:
        await _json_error(send, 404, INVALID_REQUEST, f"No A2A agent at {MOUNT}/{tenant_slug}/{agent_slug}.")
        return
    await rpc({**scope, CALLER: Caller(principal=principal, agent=agent, base_url=base_url)}, receive, send)


def with_a2a(http_app: Any) -> Any:
    """``http_app`` with ``/a2a/...`` answered by the A2A door."""

    async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path", "").startswith(MOUNT + "/"):
            await a2a_app(scope, receive, send)
        else:
            await http_app(scope, receive, send)

    return route
