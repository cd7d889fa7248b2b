"""Agent classes, agent instances and their versions, direct tool calls, and messages to one agent.

Thin: parse, check the caller's rules, call one service or selector, render. Rules name agents by slug:
``aihub.user.agents.<slug>`` sees and uses an agent, ``aihub.admin.agents.<slug>`` changes it. An agent the caller
may not see is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.http.response import HttpResponseBase
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents import selectors, services
from agents.api import serializers as s
from agents.handoffs import transfer_tool
from agents.models import Agent, AgentVersion, Handoff
from agents.registry import AgentClass, agent_classes, get_agent_class
from agents.selectors import AGENTS_RESOURCE
from agents.tools import Tool, ToolArgumentsInvalid, ToolContext, ToolError, get_tool
from aihub.access.api.views import TENANT_PARAMETER
from aihub.access.principal import WRITE_SCOPE
from aihub.access.rules import Level, granted_ids
from aihub.api.base import AsyncTenantApiView, TenantApiView, TenantScopedViewSet, caller
from aihub.api.problems import PROBLEM_CONTENT_TYPE, service_errors
from aihub.api.schema import ProblemSerializer
from aihub.db import db_call
from jobs.api import submission
from jobs.api.serializers import (
    JOB_EXAMPLE,
    QUEUED_JOB_EXAMPLE,
    STATELESS_TURN_EXAMPLE,
    JobSummarySerializer,
    StatelessTurnSerializer,
    job_answer_body,
)
from threads import selectors as thread_selectors
from threads.sse import EventStreamAccepted

SLUG_PARAMETER = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The agent's slug.")


def _problem(status_code: int, description: str) -> dict[tuple[int, str], OpenApiResponse]:
    return {(status_code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=description)}


class ToolFailed(exceptions.APIException):
    """The tool ran and refused (its own ToolError): the caller's input made sense to us but not to the tool."""

    status_code = 422
    default_detail = "The tool failed."
    default_code = "tool_failed"


def _class_body(agent_class: type[AgentClass]) -> dict[str, Any]:
    return {
        "name": agent_class.name,
        "description": agent_class.description,
        "needs_model": agent_class.needs_model,
        "tools": list(agent_class.tool_names()),
        "config_schema": agent_class.config_schema(),
    }


# --- Classes ---------------------------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER], tags=["agents"])
class AgentClassListView(TenantApiView):
    """The agent classes installed (built-ins and plug-ins), with the JSON schema of their config."""

    @extend_schema(responses=s.AgentClassSerializer(many=True), summary="Registered agent classes")
    def get(self, request: Request, tenant: str) -> Response:
        self.principal.require("user", AGENTS_RESOURCE)
        body = [_class_body(agent_class) for agent_class in agent_classes().values()]
        return Response(s.AgentClassSerializer(body, many=True).data)


@extend_schema(
    parameters=[TENANT_PARAMETER, OpenApiParameter("name", str, OpenApiParameter.PATH, description="The class name.")],
    tags=["agents"],
)
class AgentClassDetailView(TenantApiView):
    @extend_schema(responses=s.AgentClassSerializer, summary="One agent class and its config schema")
    def get(self, request: Request, tenant: str, name: str) -> Response:
        self.principal.require("user", AGENTS_RESOURCE)
        agent_class = get_agent_class(name)
        if agent_class is None:
            raise Http404(f"No agent class {name!r}.")
        return Response(s.AgentClassSerializer(_class_body(agent_class)).data)


# --- Instances -------------------------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER], tags=["agents"])
class AgentViewSet(TenantScopedViewSet):
    """Agent instances. Every change makes a new immutable version; jobs record the version they ran with."""

    serializer_class = s.AgentSerializer
    lookup_field = "slug"
    model = Agent

    def visible_queryset(self) -> Any:
        return selectors.agent_list(principal=self.principal)

    def _agent(self, slug: str) -> Agent:
        return selectors.agent_get(principal=self.principal, slug=slug)

    def _may_create_any(self) -> bool:
        """Whether some rule lets the caller create at least one agent (checked before the body is read)."""
        principal = self.principal
        if principal.scopes is not None and WRITE_SCOPE not in principal.scopes:
            return False
        ids = granted_ids(Level.ADMIN, AGENTS_RESOURCE, rules=principal.rules, ceiling=principal.ceiling)
        return ids is None or bool(ids)

    @extend_schema(
        parameters=[
            OpenApiParameter("enabled", bool, description="Only enabled (true) or disabled (false) agents."),
        ],
        summary="List the agents you can see",
    )
    def list(self, request: Request, tenant: str) -> Response:
        query = s.AgentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        agents = self.get_queryset()
        if query.validated_data["enabled"] is not None:
            agents = agents.filter(enabled=query.validated_data["enabled"])
        page = self.paginate_queryset(agents)
        return self.get_paginated_response(s.AgentSerializer(page, many=True).data)

    @extend_schema(
        request=s.AgentCreateSerializer,
        responses={201: s.AgentSerializer},
        summary="Create an agent (version 1)",
        description="Needs `aihub.admin.agents.<slug>`. The config is validated against the class's schema; "
        "errors name their path, e.g. `config.temperature`.",
    )
    def create(self, request: Request, tenant: str) -> Response:
        if not self._may_create_any():
            raise PermissionDenied(f"Your roles do not allow creating agents in tenant {self.principal.tenant.slug}.")
        data = s.AgentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if not self.principal.can("admin", AGENTS_RESOURCE, fields["slug"]):
            raise PermissionDenied(f"Your roles do not allow creating the agent {fields['slug']!r}.")
        try:
            agent = services.agent_create(tenant=self.principal.tenant, created_by=caller(request), **fields)
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(s.AgentSerializer(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[SLUG_PARAMETER], summary="One agent")
    def retrieve(self, request: Request, tenant: str, slug: str) -> Response:
        return Response(s.AgentSerializer(self._agent(slug)).data)

    @extend_schema(
        parameters=[SLUG_PARAMETER],
        request=s.AgentUpdateSerializer,
        responses=s.AgentSerializer,
        summary="Change an agent (a new version)",
        description="Needs `aihub.admin.agents.<slug>`. A change that alters nothing makes no new version.",
    )
    def partial_update(self, request: Request, tenant: str, slug: str) -> Response:
        self.principal.require("admin", AGENTS_RESOURCE, slug)
        agent = self._agent(slug)
        data = s.AgentUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            agent = services.agent_update(agent=agent, updated_by=caller(request), **data.validated_data)
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(s.AgentSerializer(agent).data)

    @extend_schema(
        parameters=[SLUG_PARAMETER],
        responses={204: None, **_problem(409, "The agent has jobs: disable it (PATCH enabled=false) instead.")},
        summary="Delete an agent that never ran",
        description="Jobs keep the agent and version they ran with, so an agent with jobs cannot be deleted "
        "(409); disable it instead.",
    )
    def destroy(self, request: Request, tenant: str, slug: str) -> Response:
        self.principal.require("admin", AGENTS_RESOURCE, slug)
        services.agent_delete(agent=self._agent(slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER], tags=["agents"])
class AgentVersionViewSet(TenantScopedViewSet):
    """An agent's immutable versions, newest first."""

    serializer_class = s.AgentVersionSerializer
    model = AgentVersion

    def visible_queryset(self) -> Any:
        agent = selectors.agent_get(principal=self.principal, slug=self.kwargs["slug"])
        return selectors.agent_version_list(agent=agent)

    @extend_schema(summary="An agent's versions, newest first")
    def list(self, request: Request, tenant: str, slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.AgentVersionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("version", int, OpenApiParameter.PATH, description="The version number.")],
        summary="One version of an agent",
    )
    def retrieve(self, request: Request, tenant: str, slug: str, version: int) -> Response:
        found = self.get_queryset().filter(version=version).first()
        if found is None:
            raise Http404(f"Agent {slug!r} has no version {version}.")
        return Response(s.AgentVersionSerializer(found).data)


# --- Tools -----------------------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        TENANT_PARAMETER,
        SLUG_PARAMETER,
        OpenApiParameter("name", str, OpenApiParameter.PATH, description="One of the agent's tools."),
    ],
    tags=["agents"],
)
class AgentToolCallView(TenantApiView):
    @extend_schema(
        request=s.ToolCallSerializer,
        responses={200: s.ToolResultSerializer, **_problem(422, "The tool ran and failed; `detail` says why.")},
        summary="Call one of the agent's tools directly",
        description="For webhooks and tests: the arguments are validated against the tool's JSON schema "
        "(400 lists the fields, as `arguments.<name>`). Tools that need approval when an agent calls them need "
        "`aihub.admin.agents.<slug>` to be called directly.",
    )
    def post(self, request: Request, tenant: str, slug: str, name: str) -> Response:
        agent = selectors.agent_get(principal=self.principal, slug=slug)
        tool = get_tool(name) if name in agent.tools else None
        if tool is None:
            raise Http404(f"Agent {slug!r} has no tool {name!r}.")
        if tool.requires_approval and not self.principal.can("admin", AGENTS_RESOURCE, slug):
            raise PermissionDenied(f"Tool {name!r} needs approval; calling it directly needs admin rights on {slug!r}.")
        data = s.ToolCallSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        thread_id = data.validated_data["thread"]
        if thread_id is not None:
            thread_id = thread_selectors.thread_get(principal=self.principal, thread_id=thread_id).pk
        context = ToolContext(
            tenant_id=self.principal.tenant.pk,
            thread_id=thread_id,
            agent_id=agent.pk,
            user_id=caller(request).pk,
            context=data.validated_data["context"],
        )
        try:
            output = tool.call(context, data.validated_data["arguments"])
        except ToolArgumentsInvalid as exc:
            raise exceptions.ValidationError(
                {".".join(filter(None, ["arguments", error["field"]])): [error["message"]] for error in exc.errors}
            ) from exc
        except ToolError as exc:
            raise ToolFailed(str(exc)) from exc
        return Response(s.ToolResultSerializer({"output": output}).data)


# --- Messages --------------------------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER], tags=["agents"])
class AgentMessagesView(AsyncTenantApiView):
    content_negotiation_class = EventStreamAccepted

    @extend_schema(
        parameters=[submission.WaitQuerySerializer, submission.IDEMPOTENCY_KEY_PARAMETER],
        request=s.AgentMessageSerializer,
        responses={
            # The example sits on the response, not in extend_schema(examples=): there it would replace the
            # request examples of AgentMessageSerializer.
            202: OpenApiResponse(
                JobSummarySerializer,
                description="The job, queued or running.",
                examples=[OpenApiExample("Queued", value=QUEUED_JOB_EXAMPLE, status_codes=["202"])],
            ),
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="AgentMessageAnswer",
                    serializers=[JobSummarySerializer, StatelessTurnSerializer],
                    resource_type_field_name=None,
                ),
                description=f"With `wait=true`: the job, ended. {submission.RETRIED_DESCRIPTION} A stateless turn "
                "(`chat_history` given) adds `new_messages`, `file_ids_map` and `cost`.",
                examples=[
                    OpenApiExample("Ended", value=JOB_EXAMPLE, status_codes=["200"]),
                    OpenApiExample("A stateless turn, ended", value=STATELESS_TURN_EXAMPLE, status_codes=["200"]),
                ],
            ),
            **submission.STREAMED_RESPONSE,
            **submission.SUBMIT_CONFLICT_RESPONSE,
        },
        summary="Talk to one agent",
        description="Stores the message on the given thread (or a new one) and starts a job of this agent. "
        "Answers 202 with the job; with `wait=true`, 200 with the result once it ends; with `stream=true`, the "
        "job's server-sent events until it ends. With `chat_history` instead of `thread` the turn is stateless: "
        "the agent sees your history, nothing of it is kept (see the field), and the answer and the final event "
        "add `new_messages`, `file_ids_map` and `cost`. `client_config` sends this job's model calls to your own "
        "endpoint with your key (needs `aihub.user.client-config`).",
    )
    async def post(self, request: Request, tenant: str, slug: str) -> HttpResponseBase:
        submitted = await db_call(self._submit, request, slug)
        return await submission.answer_submitted(submitted, body=job_answer_body)

    def _submit(self, request: Request, slug: str) -> submission.Submitted:
        agent = selectors.agent_get(principal=self.principal, slug=slug)
        query = submission.wait_query(request)
        key = submission.idempotency_key(request)
        data = s.AgentMessageSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        thread = None
        if body["thread"] is not None:
            thread = thread_selectors.thread_get(principal=self.principal, thread_id=body["thread"])
        job, created = submission.submit_message(
            body, agent=agent, thread=thread, user=caller(request), idempotency_key=key, principal=self.principal
        )
        return submission.Submitted(job, created, query)


# --- Handoffs and the agent graph ------------------------------------------------------------------------

TARGET_PARAMETER = OpenApiParameter("target", str, OpenApiParameter.PATH, description="The target agent's slug.")


def _handoff(principal: Any, slug: str, target: str) -> Handoff:
    agent = selectors.agent_get(principal=principal, slug=slug)
    edge = selectors.agent_handoff_list(principal=principal, agent=agent).filter(target__slug=target).first()
    if edge is None:
        raise Http404(f"Agent {slug!r} has no handoff to {target!r}.")
    return edge


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER], tags=["agents"])
class AgentHandoffListView(TenantApiView):
    """An agent's handoff edges: the agents its ``transfer_to_agent`` tool may pass a thread to."""

    @extend_schema(responses=s.HandoffSerializer(many=True), summary="An agent's handoff edges")
    def get(self, request: Request, tenant: str, slug: str) -> Response:
        agent = selectors.agent_get(principal=self.principal, slug=slug)
        edges = selectors.agent_handoff_list(principal=self.principal, agent=agent)
        return Response(s.HandoffSerializer(edges, many=True).data)

    @extend_schema(
        request=s.HandoffCreateSerializer,
        responses={201: s.HandoffSerializer},
        summary="Add a handoff edge",
        description="Needs `aihub.admin.agents.<slug>`. The target is another agent of the same tenant that you "
        "can see; an edge to the agent itself, or a second edge to the same target, is a 400. Edges are read when "
        "a job runs: they are not part of the agent's versions.",
    )
    def post(self, request: Request, tenant: str, slug: str) -> Response:
        self.principal.require("admin", AGENTS_RESOURCE, slug)
        agent = selectors.agent_get(principal=self.principal, slug=slug)
        data = s.HandoffCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        target = selectors.agent_list(principal=self.principal).filter(slug=body["target"]).first()
        if target is None:
            raise exceptions.ValidationError({"target": [f"No agent {body['target']!r} in this tenant."]})
        try:
            edge = services.handoff_create(
                source=agent,
                target=target,
                description=body["description"],
                required_state_keys=body["required_state_keys"],
            )
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(s.HandoffSerializer(edge).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER, TARGET_PARAMETER], tags=["agents"])
class AgentHandoffDetailView(TenantApiView):
    @extend_schema(responses=s.HandoffSerializer, summary="One handoff edge")
    def get(self, request: Request, tenant: str, slug: str, target: str) -> Response:
        return Response(s.HandoffSerializer(_handoff(self.principal, slug, target)).data)

    @extend_schema(
        request=s.HandoffUpdateSerializer,
        responses=s.HandoffSerializer,
        summary="Change a handoff edge",
        description="Needs `aihub.admin.agents.<slug>`. The ends are fixed: delete the edge and add another.",
    )
    def patch(self, request: Request, tenant: str, slug: str, target: str) -> Response:
        self.principal.require("admin", AGENTS_RESOURCE, slug)
        edge = _handoff(self.principal, slug, target)
        data = s.HandoffUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            edge = services.handoff_update(handoff=edge, **data.validated_data)
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(s.HandoffSerializer(edge).data)

    @extend_schema(responses={204: None}, summary="Remove a handoff edge")
    def delete(self, request: Request, tenant: str, slug: str, target: str) -> Response:
        self.principal.require("admin", AGENTS_RESOURCE, slug)
        services.handoff_delete(handoff=_handoff(self.principal, slug, target))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _tool_body(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters_schema,
        "requires_approval": tool.requires_approval,
    }


@extend_schema(parameters=[TENANT_PARAMETER], tags=["agents"])
class AgentGraphView(TenantApiView):
    @extend_schema(
        responses=s.AgentGraphSerializer,
        summary="Agents, their tools and handoff edges (metadata for frontends)",
        description="Nodes are the agents you can see, each with the model its jobs use, the tools its model is "
        "offered (`transfer_to_agent` when it has an edge to an enabled agent and its class calls tools) with their "
        "JSON schemas, its handoff targets, its conversation starters and quick replies, and `is_entry_point`: "
        "enabled, and no agent you can see hands off to it (where a conversation starts). Edges are the handoffs "
        "between agents you can see. Three queries, however many agents.",
    )
    def get(self, request: Request, tenant: str) -> Response:
        # Like the agent list: a caller whose rules name single agents sees those (and an empty graph without any).
        agents = list(selectors.agent_list(principal=self.principal))
        edges = list(selectors.handoff_list(principal=self.principal))
        outgoing: dict[Any, list[Handoff]] = {}
        for edge in edges:
            outgoing.setdefault(edge.source_id, []).append(edge)
        targets = {edge.target_id for edge in edges}
        nodes = []
        for agent in agents:
            agent_class = get_agent_class(agent.class_name)
            tools = [tool for name in agent.tools if (tool := get_tool(name)) is not None]
            if agent_class is not None and agent_class.tool_names():
                enabled_edges = [edge for edge in outgoing.get(agent.pk, []) if edge.target.enabled]
                transfer = transfer_tool(edges=sorted(enabled_edges, key=lambda edge: edge.target.slug))
                if transfer is not None:
                    tools.append(transfer)
            nodes.append(
                {
                    "slug": agent.slug,
                    "name": agent.name,
                    "description": agent.description,
                    "class_name": agent.class_name,
                    "model": selectors.agent_model(agent),
                    "enabled": agent.enabled,
                    "is_entry_point": agent.enabled and agent.pk not in targets,
                    "tools": [tool.name for tool in tools],
                    "tool_schemas": [_tool_body(tool) for tool in tools],
                    "handoffs": [edge.target.slug for edge in outgoing.get(agent.pk, [])],
                    "conversation_starters": list(agent.conversation_starters),
                    "quick_replies": list(agent.quick_replies),
                }
            )
        body = {
            "nodes": nodes,
            "edges": [
                {
                    "source": edge.source.slug,
                    "target": edge.target.slug,
                    "description": edge.description,
                    "required_state_keys": edge.required_state_keys,
                }
                for edge in edges
            ],
        }
        return Response(s.AgentGraphSerializer(body).data)
