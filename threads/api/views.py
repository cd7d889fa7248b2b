"""Threads, their members, messages, event log and state. Thin: parse, call one service or selector, render.

Permission resource ``threads``: with aihub.user.threads a caller sees the threads it is a member of, with
aihub.admin.threads every thread of the tenant; a thread the caller may not see is a 404, never a 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import Agent
from agents.selectors import agent_get, agent_list, answering_agent
from aihub.access.api.views import TENANT_PARAMETER
from aihub.api.base import AsyncTenantApiView, TenantScopedViewSet, caller
from aihub.api.pagination import CursorEnvelopePagination, cursor_pagination
from aihub.db import db_call
from jobs import selectors as job_selectors
from jobs.api import submission
from jobs.models import Job
from threads import selectors, services
from threads.api import serializers as s
from threads.events import event_payload
from threads.models import Thread, ThreadMember
from threads.sse import EventStreamAccepted

# A thread's event sequence is gap-free and assigned in order: the cursor's position, unique on its own.
EVENT_ORDERING = ("sequence",)
THREAD_ID_PARAMETER = OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH, description="The thread's id.")


def _parsed(serializer_class: type[Any], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@extend_schema(parameters=[TENANT_PARAMETER])
class ThreadViewSet(TenantScopedViewSet):
    """Conversations between users and agents, with their history, event log and state."""

    serializer_class = s.ThreadSerializer
    model = Thread
    # messages/ streams with ?stream=true: a client accepting text/event-stream must not get a 406 there.
    content_negotiation_class = EventStreamAccepted

    def visible_queryset(self) -> Any:
        return selectors.thread_list(principal=self.principal)

    def get_serializer_class(self) -> Any:
        # The thread's sub-resources are paginated lists of other things; the browsable API and the schema
        # generator ask this, so each action names its own item type.
        return {"members": s.ThreadMemberSerializer, "checkpoints": s.CheckpointSerializer}.get(
            self.action, s.ThreadSerializer
        )

    # --- The thread ---------------------------------------------------------------------------------------

    @extend_schema(
        summary="Threads the caller takes part in, newest first",
        parameters=[
            OpenApiParameter("agent", str, description="Only threads this agent (slug) is a member of."),
        ],
    )
    def list(self, request: Request, tenant: str) -> Response:
        threads = self.get_queryset()
        agent_slug = request.query_params.get("agent")
        if agent_slug:
            agent = agent_list(principal=self.principal).filter(slug=agent_slug).first()
            # An agent the caller can't see filters like one without threads: the list says nothing about it.
            threads = selectors.thread_list(principal=self.principal, agent_id=agent.pk) if agent else threads.none()
        page = self.paginate_queryset(threads)
        return self.get_paginated_response(s.ThreadSerializer(page, many=True).data)

    @extend_schema(request=s.ThreadCreateSerializer, responses={201: s.ThreadSerializer}, summary="Start a thread")
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("user", "threads")
        data = _parsed(s.ThreadCreateSerializer, request.data)
        thread = services.thread_create(tenant=self.principal.tenant, created_by=caller(request), **data)
        return Response(s.ThreadSerializer(thread).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[THREAD_ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.ThreadSerializer(self.get_object()).data)

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        request=s.ThreadUpdateSerializer,
        responses=s.ThreadSerializer,
        summary="Change the title or metadata (recorded as thread.updated)",
    )
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        thread = self.get_object()
        data = _parsed(s.ThreadUpdateSerializer, request.data)
        thread = services.thread_update(thread=thread, **data)
        return Response(s.ThreadSerializer(thread).data)

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        responses={204: None},
        summary="Delete a thread with its messages, events and jobs (its creator or a threads admin)",
    )
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        thread = self.get_object()
        if thread.created_by_id != caller(request).pk and not self.principal.can("admin", "threads"):
            raise PermissionDenied("Only the thread's creator or a threads admin may delete it.")
        services.thread_delete(thread=thread)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- Members ------------------------------------------------------------------------------------------

    def _member_body(self, member: ThreadMember, agents: dict[uuid.UUID, Agent]) -> dict[str, Any]:
        return {
            "id": member.pk,
            "kind": "user" if member.user_id else "agent",
            "user": member.user,
            "agent": agents.get(member.agent_id) if member.agent_id else None,
            "added_at": member.added_at,
        }

    def _agents_of(self, members: Sequence[ThreadMember]) -> dict[uuid.UUID, Agent]:
        ids = {m.agent_id for m in members if m.agent_id}
        return {a.pk: a for a in Agent.objects.filter(tenant=self.principal.tenant, pk__in=ids)} if ids else {}

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        responses=s.ThreadMemberSerializer(many=True),
        summary="Users and agents taking part in the thread",
        methods=["GET"],
    )
    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        request=s.ThreadMemberCreateSerializer,
        responses={201: s.ThreadMemberSerializer, 200: s.ThreadMemberSerializer},
        summary="Add a user (a member of the tenant) or an agent; 200 when already a member",
        methods=["POST"],
    )
    def members(self, request: Request, tenant: str, pk: str) -> Response:
        thread = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.thread_member_list(thread=thread))
            agents = self._agents_of(page or [])
            body = [self._member_body(member, agents) for member in page or []]
            return self.get_paginated_response(s.ThreadMemberSerializer(body, many=True).data)

        data = _parsed(s.ThreadMemberCreateSerializer, request.data)
        members = selectors.thread_member_list(thread=thread)
        if "agent" in data:
            agent = agent_get(principal=self.principal, slug=data["agent"])
            found = members.filter(agent_id=agent.pk).first()
            member = found or services.thread_member_add(thread=thread, agent_id=agent.pk)
        else:
            membership = (
                self.principal.tenant.memberships.select_related("user")
                .filter(user__username=data["user"], user__is_active=True)
                .first()
            )
            if membership is None:
                raise ValidationError({"user": "No active member of this tenant has this username."})
            found = members.filter(user=membership.user).first()
            member = found or services.thread_member_add(thread=thread, user=membership.user)
        rendered = s.ThreadMemberSerializer(self._member_body(member, self._agents_of([member]))).data
        return Response(rendered, status=status.HTTP_200_OK if found else status.HTTP_201_CREATED)

    # --- Events and state ---------------------------------------------------------------------------------

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER, s.EventQuerySerializer],
        responses=PolymorphicProxySerializer(
            component_name="EventLogPage",
            serializers=[s.EventPageSerializer, s.EventCursorPageSerializer],
            resource_type_field_name=None,
        ),
        summary="The event log, oldest first, from after the given id",
        description="Events have gap-free ids per thread. Read on with `after=next_after` while `has_more`; or "
        "with `cursor=` (empty) and then each page's `next` link.",
    )
    def events(self, request: Request, tenant: str, pk: str) -> Response:
        thread = self.get_object()
        query = _parsed(s.EventQuerySerializer, request.query_params)
        if "cursor" in query:
            paginator = CursorEnvelopePagination(EVENT_ORDERING)
            page = paginator.paginate_queryset(selectors.event_list(thread=thread, after=query["after"]), request)
            return paginator.get_paginated_response([event_payload(event) for event in page or []])
        after, limit = query["after"], query["limit"]
        # One row more than asked for tells whether there is a next page without counting the log.
        rows = list(selectors.event_list(thread=thread, after=after)[: limit + 1])
        items = [event_payload(event) for event in rows[:limit]]
        body = {"items": items, "next_after": items[-1]["id"] if items else after, "has_more": len(rows) > limit}
        return Response(body)

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        responses=s.ThreadStateSerializer,
        summary="The thread's state",
        methods=["GET"],
    )
    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        request=s.ThreadStateUpdateSerializer,
        responses=s.ThreadStateSerializer,
        summary="Merge into or replace the thread's state (recorded as state.updated)",
        methods=["PATCH"],
    )
    def state(self, request: Request, tenant: str, pk: str) -> Response:
        thread = self.get_object()
        if request.method == "PATCH":
            data = _parsed(s.ThreadStateUpdateSerializer, request.data)
            thread = services.thread_state_update(thread=thread, state=data["state"], mode=data["mode"])
        return Response({"state": thread.state})

    # --- Runtime view, checkpoints and forks ---------------------------------------------------------------

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        responses=s.ThreadRuntimeSerializer,
        summary="What is going on in the thread now: active agent, job and step, pending requests, handoffs",
        description="The active agent (who answers the next message when none is named), the active job with its "
        "step, the human-in-the-loop requests waiting for an answer (answer them with jobs/{id}/respond), the "
        "handoff chain, the state with its version, and the latest checkpoint. `variables` is SwarmForge's name "
        "for the same object as `state`.",
    )
    def runtime(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.ThreadRuntimeSerializer(job_selectors.thread_runtime(thread=self.get_object())).data)

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        responses=s.CheckpointSerializer(many=True),
        summary="The thread's checkpoints, newest first (one per finished turn)",
        description="Each finished turn records the thread as it left it: its last message (the checkpoint has the "
        "messages up to it), its last event, the state and the active agent. Fork from one with .../fork.",
    )
    def checkpoints(self, request: Request, tenant: str, pk: str) -> Response:
        page = self.paginate_queryset(selectors.checkpoint_list(thread=self.get_object()))
        return self.get_paginated_response(s.CheckpointSerializer(page, many=True).data)

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        request=s.ThreadForkSerializer,
        responses={201: s.ThreadSerializer},
        summary="A new thread from one of this thread's checkpoints (time travel)",
        description="Copies the messages up to the checkpoint and its state into a new thread of the tenant, with "
        "you as member and the checkpoint's active agent as its agent; `metadata.forked_from` names the source "
        "thread and checkpoint. The source is not changed. A checkpoint of another thread is a 400.",
    )
    def fork(self, request: Request, tenant: str, pk: str) -> Response:
        self.principal.require("user", "threads")
        thread = self.get_object()
        data = _parsed(s.ThreadForkSerializer, request.data)
        forked = services.thread_fork(
            thread=thread, checkpoint_id=data["checkpoint"], created_by=caller(request), title=data.get("title")
        )
        return Response(s.ThreadSerializer(forked).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["threads"])
class ThreadMessagesView(AsyncTenantApiView):
    """A thread's messages; posting one starts an agent's job."""

    # Async: with wait=true the request sleeps on the channel layer until the job ends, holding no thread or
    # database connection; its ORM work runs in short db_call()s.
    pagination_class = cursor_pagination("created_at", "id")
    # ?stream=true: a client accepting text/event-stream must not get a 406 here.
    content_negotiation_class = EventStreamAccepted

    @extend_schema(
        parameters=[THREAD_ID_PARAMETER],
        responses=s.MessageSerializer(many=True),
        summary="The thread's messages, oldest first",
    )
    async def get(self, request: Request, tenant: str, pk: uuid.UUID) -> Response:
        return await db_call(self._list, request, pk)

    def _list(self, request: Request, pk: uuid.UUID) -> Response:
        thread = selectors.thread_get(principal=self.principal, thread_id=pk)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.message_list(thread=thread), request, view=self)
        return paginator.get_paginated_response(s.MessageSerializer(page, many=True).data)

    @extend_schema(
        parameters=[
            THREAD_ID_PARAMETER,
            submission.WaitQuerySerializer,
            submission.IDEMPOTENCY_KEY_PARAMETER,
        ],
        request=s.MessageCreateSerializer,
        responses={
            202: OpenApiResponse(s.MessageJobSerializer, description="The job is queued or still running."),
            200: OpenApiResponse(
                s.MessageJobSerializer,
                description="With wait=true: the job ended (output, usage or error filled in). "
                + submission.RETRIED_DESCRIPTION,
            ),
            **submission.STREAMED_RESPONSE,
            **submission.SUBMIT_CONFLICT_RESPONSE,
        },
        summary="Send a message: an agent answers it in a job",
        description="Stores the message and queues a job of the agent; the answer arrives as events (events/, "
        "the thread's stream) and in the job. With `wait=true` the request waits up to `timeout` seconds for the "
        "job to end; with `stream=true` the answer is the job's server-sent events until it ends.",
    )
    async def post(self, request: Request, tenant: str, pk: uuid.UUID) -> HttpResponseBase:
        submitted = await db_call(self._submit, request, pk)
        return await submission.answer_submitted(submitted, body=self._job_body)

    def _submit(self, request: Request, pk: uuid.UUID) -> submission.Submitted:
        thread = selectors.thread_get(principal=self.principal, thread_id=pk)
        query = submission.wait_query(request)
        key = submission.idempotency_key(request)
        data = _parsed(s.MessageCreateSerializer, request.data)
        agent = answering_agent(principal=self.principal, thread=thread, slug=data.get("agent"))
        job, created = submission.submit_message(
            data, agent=agent, thread=thread, user=caller(request), idempotency_key=key, principal=self.principal
        )
        return submission.Submitted(job, created, query)

    def _job_body(self, job: Job) -> Any:
        first = job.first_event_id or (
            selectors.event_list(thread=job.thread, job_id=job.pk).values_list("sequence", flat=True).first()
        )
        context = {"tenant": self.kwargs["tenant"], "events_after": max(0, (first or 1) - 1)}
        return s.MessageJobSerializer(job, context=context).data
