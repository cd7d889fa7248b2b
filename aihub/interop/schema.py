"""Per-agent paths in the OpenAPI description: ``GET /api/v1/{tenant}/schema/``.

The public document (``/api/v1/schema/``, served to anyone) describes the generic route
``POST /api/v1/{tenant}/agents/{slug}/messages`` and names no agent: agents' names are the tenants' business.
A member of a tenant gets the same document from ``/api/v1/{tenant}/schema/`` with, in addition, one path per
enabled agent it may use, ``/api/v1/{tenant}/agents/{slug}/messages`` with the tenant and slug filled in, its
own operation id, a description from the agent and its class, and its own request schema
(``AgentMessage_<tenant>_<slug>Request``): the shared message fields, described for this agent, with
``context`` described by the class when the class declares a pydantic model ``Context`` (what its tools read).

``/api/v1/{tenant}/docs/`` is Swagger UI over it (for a browser signed in to the admin: the page fetches the
document with the session). The document is generated on every request (no cache), so it follows agents being
created, changed, disabled or deleted without a restart.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularSwaggerView
from pydantic import BaseModel
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import Agent
from agents.registry import AgentClass, get_agent_class
from agents.selectors import agent_list
from aihub.access.api.views import TENANT_PARAMETER
from aihub.access.principal import Principal
from aihub.api.base import TenantApiView
from aihub.api.schema import openapi_30_schema

GENERIC_PATH = "/api/v1/{tenant}/agents/{slug}/messages"
GENERIC_REQUEST = "AgentMessageRequest"
AGENT_EXTENSION = "x-aihub-agent"


def _identifier(*parts: str) -> str:
    """Slugs as an identifier for operation ids and component names (letters, digits, underscores)."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", part) for part in parts)


def _context_schema(agent_class: type[AgentClass] | None) -> dict[str, Any] | None:
    """The class's ``Context`` model as OpenAPI 3.0, when it declares one."""
    model = getattr(agent_class, "Context", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    converted: dict[str, Any] = openapi_30_schema(schema, defs)
    converted.pop("title", None)
    converted["description"] = (
        converted.get("description") or f"What the tools of class `{agent_class.name}` read from the request."  # type: ignore[union-attr]
    )
    return converted


def _agent_description(agent: Agent, agent_class: type[AgentClass] | None) -> str:
    lines = [f"Talk to **{agent.name}** (`{agent.slug}`)." + (f" {agent.description}" if agent.description else "")]
    if agent_class is not None:
        lines.append(f"Class `{agent_class.name}`: {agent_class.description}".rstrip(": "))
    if agent.tools:
        lines.append("Tools: " + ", ".join(f"`{tool}`" for tool in agent.tools) + ".")
    lines.append(
        "Stores the message on the given thread (or a new one) and starts a job of this agent; `wait=true` "
        "answers with the result, `stream=true` with the job's server-sent events."
    )
    return "\n\n".join(lines)


def add_agent_paths(schema: dict[str, Any], *, agents: list[Agent], tenant_slug: str) -> dict[str, Any]:
    """Add one documented path per agent to a generated document (in place; also returned)."""
    generic = schema.get("paths", {}).get(GENERIC_PATH, {}).get("post")
    base_request = schema.get("components", {}).get("schemas", {}).get(GENERIC_REQUEST)
    if generic is None or base_request is None:
        return schema  # the generic route is not in this document (a test's URLconf)
    for agent in agents:
        agent_class = get_agent_class(agent.class_name)
        name = _identifier("AgentMessage", tenant_slug, agent.slug) + "Request"
        request = copy.deepcopy(base_request)
        request["description"] = f"A message to {agent.name} (`{agent.slug}`)."
        context = _context_schema(agent_class)
        if context is not None:
            request["properties"]["context"] = context
        schema["components"]["schemas"][name] = request

        operation = copy.deepcopy(generic)
        operation["operationId"] = _identifier("agent", tenant_slug, agent.slug, "messages")
        operation["summary"] = f"Talk to {agent.name}"
        operation["description"] = _agent_description(agent, agent_class)
        operation["tags"] = ["agent instances"]
        operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
        for media in operation.get("requestBody", {}).get("content", {}).values():
            media["schema"] = {"$ref": f"#/components/schemas/{name}"}
            media.pop("examples", None)
        operation["requestBody"]["content"]["application/json"]["examples"] = {
            "Hello": {"summary": "A new thread", "value": {"content": f"Hello, {agent.name}!"}}
        }
        operation[AGENT_EXTENSION] = {
            "slug": agent.slug,
            "class": agent.class_name,
            "version": agent.version,
            "model": agent.model,
            "tools": list(agent.tools),
        }
        schema["paths"][f"/api/v1/{tenant_slug}/agents/{agent.slug}/messages"] = {"post": operation}
    return schema


def tenant_schema(*, principal: Principal) -> dict[str, Any]:
    """The whole API description plus the paths of the tenant's enabled agents the caller may use."""
    document: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    agents = list(agent_list(principal=principal).filter(enabled=True))
    add_agent_paths(document, agents=agents, tenant_slug=principal.tenant.slug)
    if agents:
        document.setdefault("tags", []).append(
            {"name": "agent instances", "description": f"The agents of tenant {principal.tenant.slug}, one path each."}
        )
    return document


@extend_schema(
    parameters=[TENANT_PARAMETER],
    tags=["schema"],
    summary="The API description with one path per agent of the tenant",
    description="The OpenAPI document of `/api/v1/schema/`, plus `POST /api/v1/{tenant}/agents/{slug}/messages` "
    "for each enabled agent of this tenant you may use, with its own request schema. Generated on every request, "
    "so it follows agents as they are created, changed or disabled. Members only: the public document names no "
    "agent.",
    responses={
        200: OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="An OpenAPI 3 document.",
            examples=[
                OpenApiExample(
                    "A tenant's document",
                    value={
                        "openapi": "3.0.3",
                        "info": {"title": "aihub API", "version": "1.0.0"},
                        "paths": {"/api/v1/acme/agents/support/messages": {"post": {"summary": "Talk to Support"}}},
                    },
                )
            ],
        )
    },
)
class TenantSchemaView(TenantApiView):
    renderer_classes = [JSONRenderer]

    def get(self, request: Request, tenant: str) -> Response:
        return Response(tenant_schema(principal=self.principal))


@extend_schema(exclude=True)
class TenantSwaggerView(SpectacularSwaggerView):
    """Swagger UI over the tenant's document. The page itself names no agent; the browser fetches the document
    with the signed-in session, so only members see the agents' paths."""

    def _get_schema_url(self, request: Request) -> str:
        return reverse("tenant-schema", kwargs={"tenant": self.kwargs["tenant"]})
