"""Long-term memory over the API: ``memories/`` (the caller's own) and ``org-memories/`` (the tenant's shared).

Thin: parse, check, call one service or selector of ``agents.memory``, render. A user's own memories need no
rule (they are theirs to see and manage; an OAuth2 token still needs the ``write`` scope to change them). The
tenant's shared memories are read with ``aihub.user.memories`` and changed with ``aihub.admin.memories``. A
memory of another user or tenant is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    extend_schema_view,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.memory import (
    MEMORIES_RESOURCE,
    MEMORY_MAX_CHARS,
    QUERY_MAX_CHARS,
    memory_create,
    memory_delete,
    memory_delete_all,
    memory_list_of_tenant,
    memory_list_of_user,
    memory_search,
    memory_update,
)
from agents.models import Memory, MemoryScope
from aihub.access.api.serializers import StrictSerializer
from aihub.access.api.views import TENANT_PARAMETER
from aihub.access.principal import WRITE_SCOPE
from aihub.api.base import TenantScopedViewSet, caller
from aihub.api.problems import PROBLEM_CONTENT_TYPE, not_found, service_errors
from aihub.api.schema import ProblemSerializer

METADATA_MAX_BYTES = 8 * 1024

MEMORY_EXAMPLE: dict[str, Any] = {
    "id": "0b7e3f1c-5d2a-4c8e-9f6b-7a1d2e3c4b5a",
    "scope": "user",
    "text": "Prefers answers in German.",
    "metadata": {},
    "source_thread": "3f1c0b7e-2a5d-4e8c-6b9f-1d7a2e3c4b5a",
    "source_job": "5d2a0b7e-3f1c-4e8c-9f6b-7a1d2e3c4b5a",
    "source_agent": "7a1d0b7e-3f1c-4c8e-9f6b-5d2a2e3c4b5a",
    "score": 0.71,
    "created_at": "2026-11-25T16:00:00Z",
    "updated_at": "2026-11-25T16:00:00Z",
}


@extend_schema_serializer(examples=[OpenApiExample("A memory", value=MEMORY_EXAMPLE, response_only=True)])
class MemorySerializer(serializers.ModelSerializer):
    score = serializers.SerializerMethodField(help_text="Cosine similarity to `q` (searches only).")
    source_job = serializers.UUIDField(source="source_job_id", read_only=True, allow_null=True)

    class Meta:
        model = Memory
        fields = [
            "id",
            "scope",
            "text",
            "metadata",
            "source_thread",
            "source_job",
            "source_agent",
            "score",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    # Null outside searches: the schema must say so (OpenApiTypes.FLOAT alone is a number that is never null).
    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_score(self, memory: Memory) -> float | None:
        score = getattr(memory, "score", None)
        return None if score is None else round(float(score), 4)


def _metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Metadata is a JSON object.")
    if len(json.dumps(value)) > METADATA_MAX_BYTES:
        raise serializers.ValidationError(f"Metadata is larger than {METADATA_MAX_BYTES} bytes.")


class MemoryWriteSerializer(StrictSerializer):
    text = serializers.CharField(max_length=MEMORY_MAX_CHARS, help_text=f"1 to {MEMORY_MAX_CHARS} characters.")
    metadata = serializers.JSONField(required=False, validators=[_metadata])


class MemoryUpdateSerializer(MemoryWriteSerializer):
    text = serializers.CharField(max_length=MEMORY_MAX_CHARS, required=False)


class DeletedSerializer(serializers.Serializer):
    deleted = serializers.IntegerField(help_text="How many memories were deleted.")


Q_PARAMETER = OpenApiParameter(
    "q",
    str,
    description=f"Semantic search (1 to {QUERY_MAX_CHARS} characters): the memories most similar to this text "
    "first, each with its `score`.",
)
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The memory's id.")


def _problems(*codes: int) -> dict[Any, Any]:
    descriptions = {
        400: "Invalid input: an empty or too long text or `q`, unknown fields, bad metadata.",
        403: "Your roles (or your token's scopes) do not allow this change.",
        404: "No such memory here: it does not exist, or it is another user's or tenant's.",
    }
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=descriptions[code])
        for code in codes
    }


class _MemoryViewSet(TenantScopedViewSet):
    serializer_class = MemorySerializer
    model = Memory
    scope: str

    def check_read(self) -> None:
        raise NotImplementedError

    def check_write(self) -> None:
        raise NotImplementedError

    def owner_id(self) -> int | None:
        raise NotImplementedError

    def _memory(self, id: Any) -> Memory:
        self.check_read()
        memory = self.get_queryset().filter(pk=id).first()
        if memory is None:
            raise not_found("memory", id)
        return memory

    def list(self, request: Request, tenant: str) -> Response:
        self.check_read()
        memories: QuerySet[Memory] | list[Memory] = self.get_queryset()
        # Present but empty is a mistake worth saying (the service refuses it), not "no search".
        if "q" in request.query_params:
            try:
                memories = memory_search(memories=self.get_queryset(), query=request.query_params["q"])
            except DjangoValidationError as exc:
                raise service_errors(exc) from exc
        page = self.paginate_queryset(memories)  # type: ignore[arg-type]  # a ranked list paginates too
        return self.get_paginated_response(MemorySerializer(page, many=True).data)

    def create(self, request: Request, tenant: str) -> Response:
        self.check_write()
        data = MemoryWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            memory = memory_create(
                tenant=self.principal.tenant,
                scope=self.scope,
                owner_id=self.owner_id(),
                text=data.validated_data["text"],
                metadata=data.validated_data.get("metadata"),
            )
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(MemorySerializer(memory).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, tenant: str, id: Any) -> Response:
        return Response(MemorySerializer(self._memory(id)).data)

    def partial_update(self, request: Request, tenant: str, id: Any) -> Response:
        memory = self._memory(id)
        self.check_write()
        data = MemoryUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            memory = memory_update(memory=memory, **data.validated_data)
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(MemorySerializer(memory).data)

    def destroy(self, request: Request, tenant: str, id: Any) -> Response:
        memory = self._memory(id)
        self.check_write()
        memory_delete(memory=memory)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def destroy_all(self, request: Request, tenant: str) -> Response:
        self.check_read()
        self.check_write()
        return Response({"deleted": memory_delete_all(memories=self.get_queryset())})


def _documented(**summaries: str) -> Any:
    """The OpenAPI description of one memory viewset: the same shapes for both, their own summaries."""
    return extend_schema_view(
        list=extend_schema(
            parameters=[Q_PARAMETER],
            responses={200: MemorySerializer(many=True), **_problems(400)},
            summary=summaries["list"],
        ),
        create=extend_schema(
            request=MemoryWriteSerializer,
            responses={201: MemorySerializer, **_problems(400, 403)},
            summary=summaries["create"],
        ),
        retrieve=extend_schema(
            parameters=[ID_PARAMETER],
            responses={200: MemorySerializer, **_problems(404)},
            summary=summaries["retrieve"],
        ),
        partial_update=extend_schema(
            parameters=[ID_PARAMETER],
            request=MemoryUpdateSerializer,
            responses={200: MemorySerializer, **_problems(400, 403, 404)},
            summary=summaries["partial_update"],
        ),
        destroy=extend_schema(
            parameters=[ID_PARAMETER], responses={204: None, **_problems(403, 404)}, summary=summaries["destroy"]
        ),
    )


@extend_schema(parameters=[TENANT_PARAMETER], tags=["memories"])
@_documented(
    list="List or search your memories",
    create="Add a memory about yourself",
    retrieve="One of your memories",
    partial_update="Change one of your memories (re-embedded)",
    destroy="Forget one of your memories",
)
class MemoryViewSet(_MemoryViewSet):
    """Your own memories in this tenant: what agents with memory remember about you."""

    scope = MemoryScope.USER

    def visible_queryset(self) -> QuerySet[Memory]:
        return memory_list_of_user(tenant=self.principal.tenant, user_id=caller(self.request).pk)

    def owner_id(self) -> int | None:
        return int(caller(self.request).pk)

    def check_read(self) -> None:
        return None  # one's own memories are always one's own to see

    def check_write(self) -> None:
        scopes = self.principal.scopes
        if scopes is not None and WRITE_SCOPE not in scopes:
            raise PermissionDenied("Changing memories needs a token with the write scope.")

    @extend_schema(
        operation_id="memories_destroy_all",
        request=None,
        responses={200: DeletedSerializer, **_problems(403)},
        summary="Forget all your memories in this tenant",
    )
    def destroy_all(self, request: Request, tenant: str) -> Response:
        return super().destroy_all(request, tenant)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["memories"])
@_documented(
    list="List or search the tenant's shared memories",
    create="Add a shared memory (admin)",
    retrieve="One shared memory",
    partial_update="Change a shared memory (admin; re-embedded)",
    destroy="Delete a shared memory (admin)",
)
class OrgMemoryViewSet(_MemoryViewSet):
    """The tenant's shared memories, recalled for everyone: read with `aihub.user.memories`, changed with
    `aihub.admin.memories`."""

    scope = MemoryScope.TENANT

    def visible_queryset(self) -> QuerySet[Memory]:
        return memory_list_of_tenant(tenant=self.principal.tenant)

    def owner_id(self) -> int | None:
        return None

    def check_read(self) -> None:
        self.principal.require("user", MEMORIES_RESOURCE)

    def check_write(self) -> None:
        self.principal.require("admin", MEMORIES_RESOURCE)

    @extend_schema(
        operation_id="org_memories_destroy_all",
        request=None,
        responses={200: DeletedSerializer, **_problems(403)},
        summary="Delete all shared memories (admin)",
    )
    def destroy_all(self, request: Request, tenant: str) -> Response:
        return super().destroy_all(request, tenant)
