"""Collections, documents and search. Thin: parse, check the caller's rules, call one service, render.

Rules name collections by slug: ``aihub.user.collections.<slug>`` sees and searches a collection and its
documents, ``aihub.admin.collections.<slug>`` changes it (documents included). A collection the caller may
not see is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import BasePagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from aihub.access.api.views import TENANT_PARAMETER
from aihub.access.principal import WRITE_SCOPE
from aihub.access.rules import Level, granted_ids
from aihub.api.base import TenantApiView, TenantScopedViewSet
from aihub.api.pagination import cursor_pagination
from aihub.api.parsers import JSONParser
from aihub.api.problems import PROBLEM_CONTENT_TYPE, PayloadTooLarge, service_errors
from aihub.api.schema import ProblemSerializer
from knowledge import selectors, services
from knowledge.api import serializers as s
from knowledge.models import Chunk, Collection, Document
from knowledge.search import SearchError, search
from knowledge.selectors import COLLECTIONS_RESOURCE

SLUG_PARAMETER = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The collection's slug.")
DOCUMENT_PARAMETER = OpenApiParameter(
    "document_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The document."
)
CHUNKS_BY_POSITION = cursor_pagination("position")
CHUNKS_BY_ID = cursor_pagination("id")


class UnsupportedMediaType(exceptions.APIException):
    status_code = 415
    default_detail = "This kind of document cannot be read."
    default_code = "unsupported_media_type"


def _problem(status_code: int, description: str) -> dict[tuple[int, str], OpenApiResponse]:
    return {(status_code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=description)}


def _search_errors(exc: SearchError) -> exceptions.ValidationError:
    return exceptions.ValidationError({exc.field: [str(exc)]})


@extend_schema(parameters=[TENANT_PARAMETER], tags=["knowledge"])
class CollectionViewSet(TenantScopedViewSet):
    """Knowledge collections: documents split into chunks with embeddings, searched by meaning and by words."""

    serializer_class = s.CollectionSerializer
    lookup_field = "slug"
    model = Collection

    def visible_queryset(self) -> Any:
        return selectors.collection_list(principal=self.principal).annotate(document_count=Count("documents"))

    def _may_create_any(self) -> bool:
        principal = self.principal
        if principal.scopes is not None and WRITE_SCOPE not in principal.scopes:
            return False
        ids = granted_ids(Level.ADMIN, COLLECTIONS_RESOURCE, rules=principal.rules, ceiling=principal.ceiling)
        return ids is None or bool(ids)

    @extend_schema(summary="List the collections you can see")
    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.CollectionSerializer(page, many=True).data)

    @extend_schema(
        request=s.CollectionCreateSerializer,
        responses={201: s.CollectionSerializer},
        summary="Create a collection",
        description="Needs `aihub.admin.collections.<slug>`. The embedder and chunking are fixed once created "
        "(`manage.py reembed` changes them and re-ingests every document).",
    )
    def create(self, request: Request, tenant: str) -> Response:
        if not self._may_create_any():
            raise PermissionDenied(
                f"Your roles do not allow creating collections in tenant {self.principal.tenant.slug}."
            )
        data = s.CollectionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if not self.principal.can("admin", COLLECTIONS_RESOURCE, fields["slug"]):
            raise PermissionDenied(f"Your roles do not allow creating the collection {fields['slug']!r}.")
        try:
            collection = services.collection_create(tenant=self.principal.tenant, **fields)
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(s.CollectionSerializer(collection).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[SLUG_PARAMETER], summary="One collection")
    def retrieve(self, request: Request, tenant: str, slug: str) -> Response:
        return Response(s.CollectionSerializer(self._collection(slug)).data)

    @extend_schema(
        parameters=[SLUG_PARAMETER],
        request=s.CollectionUpdateSerializer,
        responses=s.CollectionSerializer,
        summary="Rename or describe a collection",
    )
    def partial_update(self, request: Request, tenant: str, slug: str) -> Response:
        self.principal.require("admin", COLLECTIONS_RESOURCE, slug)
        data = s.CollectionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        collection = services.collection_update(collection=self._collection(slug), **data.validated_data)
        return Response(s.CollectionSerializer(collection).data)

    @extend_schema(
        parameters=[SLUG_PARAMETER],
        responses={204: None},
        summary="Delete a collection with its documents, chunks and files",
    )
    def destroy(self, request: Request, tenant: str, slug: str) -> Response:
        self.principal.require("admin", COLLECTIONS_RESOURCE, slug)
        services.collection_delete(collection=self._collection(slug))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _collection(self, slug: str) -> Collection:
        collection: Collection | None = self.get_queryset().filter(slug=slug).first()
        if collection is None:
            selectors.collection_get(principal=self.principal, slug=slug)  # raises the 404
            raise AssertionError
        return collection


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER], tags=["knowledge"])
class DocumentViewSet(TenantScopedViewSet):
    """A collection's documents: upload a file (multipart) or send text; each is ingested in the background."""

    serializer_class = s.DocumentSerializer
    model = Document
    pagination_class = cursor_pagination("-created_at", "id")
    parser_classes = [JSONParser, MultiPartParser]

    def collection(self) -> Collection:
        return selectors.collection_get(principal=self.principal, slug=self.kwargs["slug"])

    def visible_queryset(self) -> Any:
        return selectors.document_list(collection=self.collection())

    def _document(self, document_id: Any) -> Document:
        return selectors.document_get(collection=self.collection(), document_id=document_id)

    @extend_schema(
        parameters=[s.DocumentListQuerySerializer],
        summary="List a collection's documents",
        description="Newest first; filter by `status`, part of the `title`, and metadata equality "
        '(`metadata={"department":"hr"}`).',
    )
    def list(self, request: Request, tenant: str, slug: str) -> Response:
        query = s.DocumentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        documents = selectors.document_list(collection=self.collection(), **query.validated_data)
        page = self.paginate_queryset(documents)
        return self.get_paginated_response(s.DocumentSerializer(page, many=True).data)

    @extend_schema(
        request={"multipart/form-data": s.DocumentCreateSerializer, "application/json": s.DocumentCreateSerializer},
        responses={
            201: OpenApiResponse(s.DocumentSubmittedSerializer, description="Added (or replaced), ingestion queued."),
            200: OpenApiResponse(s.DocumentSubmittedSerializer, description="The same bytes were already there."),
            **_problem(413, "Larger than KNOWLEDGE_MAX_UPLOAD_BYTES."),
            **_problem(415, "Not a document knowledge can read (sniffed from the bytes, not the name)."),
        },
        summary="Add a document",
        description="Needs `aihub.admin.collections.<slug>`. The type is sniffed from the bytes. The same bytes "
        "again answer 200 with the existing document (`outcome: unchanged`); other bytes with the same `source` "
        "replace that document, whose chunks are swapped atomically once ingested. Watch `status`: "
        "pending → processing → ready | failed (with `error`).",
    )
    def create(self, request: Request, tenant: str, slug: str) -> Response:
        self.principal.require("admin", COLLECTIONS_RESOURCE, slug)
        collection = self.collection()
        upload = request.FILES.get("file")
        if upload is not None and upload.size is not None and upload.size > settings.KNOWLEDGE_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(
                f"The file is {upload.size} bytes; the limit is {settings.KNOWLEDGE_MAX_UPLOAD_BYTES} bytes."
            )
        data = s.DocumentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        if upload is not None:
            content, filename, media_type = upload.read(), upload.name or "", ""
        else:
            content = body["text"].encode("utf-8")
            media_type = body["media_type"] or "text/plain"
            filename = _text_filename(body["title"], media_type)
        try:
            submitted = services.document_submit(
                collection=collection,
                content=content,
                filename=filename,
                title=body["title"],
                source=body["source"],
                metadata=body["metadata"],
                media_type=media_type,
            )
        except services.DocumentTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except services.UnsupportedDocument as exc:
            raise UnsupportedMediaType(str(exc)) from exc
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        body_out = s.DocumentSubmittedSerializer(submitted.document, context={"outcome": submitted.outcome}).data
        code = status.HTTP_200_OK if submitted.outcome == "unchanged" else status.HTTP_201_CREATED
        return Response(body_out, status=code)

    @extend_schema(parameters=[DOCUMENT_PARAMETER], summary="One document: status, metadata, chunk count")
    def retrieve(self, request: Request, tenant: str, slug: str, document_id: str) -> Response:
        return Response(s.DocumentSerializer(self._document(document_id)).data)

    @extend_schema(
        parameters=[DOCUMENT_PARAMETER],
        request=s.DocumentUpdateSerializer,
        responses=s.DocumentSerializer,
        summary="Change a document's title or metadata",
    )
    def partial_update(self, request: Request, tenant: str, slug: str, document_id: str) -> Response:
        self.principal.require("admin", COLLECTIONS_RESOURCE, slug)
        data = s.DocumentUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            document = services.document_update(document=self._document(document_id), **data.validated_data)
        except DjangoValidationError as exc:
            raise service_errors(exc) from exc
        return Response(s.DocumentSerializer(document).data)

    @extend_schema(
        parameters=[DOCUMENT_PARAMETER], responses={204: None}, summary="Delete a document, its chunks and its file"
    )
    def destroy(self, request: Request, tenant: str, slug: str, document_id: str) -> Response:
        self.principal.require("admin", COLLECTIONS_RESOURCE, slug)
        services.document_delete(document=self._document(document_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[DOCUMENT_PARAMETER],
        summary="Download the original file",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The bytes as uploaded, as an attachment with the sniffed media type."
            ),
            **_problem(404, "No such collection or document."),
        },
    )
    def content(self, request: Request, tenant: str, slug: str, document_id: str) -> FileResponse:
        document = self._document(document_id)
        name = re.sub(r"[\x00-\x1f\x7f/\\\"]", "_", document.title).strip(". ") or "document"
        response = FileResponse(document.file.open("rb"), as_attachment=True, filename=name)
        response["Content-Type"] = document.media_type
        return response


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER], tags=["knowledge"])
class ChunkViewSet(TenantScopedViewSet):
    """What ingestion made of documents: their chunks' text, position, location and token count (never the
    embedding). Read-only; the chunks change only when their document is ingested again."""

    serializer_class = s.ChunkSerializer
    model = Chunk

    @property
    def pagination_class(self) -> type[BasePagination]:  # type: ignore[override]
        # A document's chunks by position; the collection's, which grows with every document, by id.
        return CHUNKS_BY_POSITION if self.action == "document" else CHUNKS_BY_ID

    def visible_queryset(self) -> Any:
        return selectors.chunk_list(collection=self.collection())

    def collection(self) -> Collection:
        return selectors.collection_get(principal=self.principal, slug=self.kwargs["slug"])

    def _page(self, chunks: Any) -> Response:
        page = self.paginate_queryset(chunks)
        return self.get_paginated_response(s.ChunkSerializer(page, many=True).data)

    @extend_schema(
        summary="A collection's chunks, oldest first",
        description="Every chunk of every document in the collection, in the order they were written.",
    )
    def list(self, request: Request, tenant: str, slug: str) -> Response:
        return self._page(selectors.chunk_list(collection=self.collection()))

    @extend_schema(
        parameters=[DOCUMENT_PARAMETER],
        responses=s.ChunkSerializer(many=True),
        summary="A document's chunks, in order",
        description="By position in the document; none until it is ingested (`status: ready`).",
    )
    def document(self, request: Request, tenant: str, slug: str, document_id: str) -> Response:
        collection = self.collection()
        document = selectors.document_get(collection=collection, document_id=document_id)
        return self._page(selectors.chunk_list(collection=collection, document=document))


def _text_filename(title: str, media_type: str) -> str:
    extension = {"text/markdown": "md", "text/html": "html", "text/csv": "csv", "application/json": "json"}.get(
        media_type, "txt"
    )
    return f"{title or 'text'}.{extension}"


_SEARCH_RESPONSES: dict[Any, Any] = {
    200: s.SearchResultSerializer,
    **_problem(
        400,
        "An empty or too long query, an unknown mode, alpha outside 0..1, candidates outside top_k..1000, or a "
        "filter on an unknown field.",
    ),
}


@extend_schema(parameters=[TENANT_PARAMETER, SLUG_PARAMETER], tags=["knowledge"])
class CollectionSearchView(TenantApiView):
    @extend_schema(
        request=s.SearchSerializer,
        responses=_SEARCH_RESPONSES,
        summary="Search one collection",
        description="`vector` (meaning), `keyword` (words) or `hybrid` (both, fused by reciprocal rank: `alpha` "
        "weighs the vector leg against the keyword leg, `candidates` is how many chunks each leg brings). Hits "
        "carry the document, chunk id, text, location and scores.",
    )
    def post(self, request: Request, tenant: str, slug: str) -> Response:
        collection = selectors.collection_get(principal=self.principal, slug=slug)
        data = s.SearchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _search_response([collection], data.validated_data)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["knowledge"])
class TenantSearchView(TenantApiView):
    @extend_schema(
        request=s.TenantSearchSerializer,
        responses=_SEARCH_RESPONSES,
        summary="Search several collections",
        description="The named collections (404 for one you cannot see), or every collection you can see.",
    )
    def post(self, request: Request, tenant: str) -> Response:
        data = s.TenantSearchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        slugs = data.validated_data.pop("collections", None)
        if slugs:
            collections = [
                selectors.collection_get(principal=self.principal, slug=slug) for slug in dict.fromkeys(slugs)
            ]
        else:
            collections = list(selectors.collection_list(principal=self.principal))
        return _search_response(collections, data.validated_data)


def _search_response(collections: list[Collection], body: dict[str, Any]) -> Response:
    try:
        hits = search(collections=collections, **body)
    except SearchError as exc:
        raise _search_errors(exc) from exc
    result = {"query": body["query"], "mode": body["mode"], "hits": [hit.as_dict() for hit in hits]}
    return Response(s.SearchResultSerializer(result).data)
