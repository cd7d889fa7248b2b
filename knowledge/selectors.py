"""Reads of knowledge, narrowed to what the caller may see: rules name collections by slug
(``aihub.user.collections.<slug>`` sees and searches one, ``aihub.admin.collections.<slug>`` changes it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from aihub.api.problems import not_found
from knowledge.models import Chunk, Collection, Document

if TYPE_CHECKING:
    from aihub.access.principal import Principal

COLLECTIONS_RESOURCE = "collections"


def collection_list(*, principal: Principal) -> QuerySet[Collection]:
    collections = Collection.objects.filter(tenant=principal.tenant).order_by("slug")
    return principal.visible(collections, COLLECTIONS_RESOURCE, id_field="slug")


def collection_get(*, principal: Principal, slug: str) -> Collection:
    """The collection, or Http404 when it does not exist or the caller may not see it (the two look the same)."""
    collection = collection_list(principal=principal).filter(slug=slug).first()
    if collection is None:
        raise not_found("collection", slug)
    return collection


def document_list(
    *,
    collection: Collection,
    status: str | None = None,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> QuerySet[Document]:
    documents = Document.objects.filter(collection=collection).order_by("-created_at", "id")
    if status:
        documents = documents.filter(status=status)
    if title:
        documents = documents.filter(title__icontains=title)
    for key, value in (metadata or {}).items():
        documents = documents.filter(**{f"metadata__{key}": value})
    return documents


def document_get(*, collection: Collection, document_id: Any) -> Document:
    document = Document.objects.filter(collection=collection, pk=document_id).first()
    if document is None:
        raise not_found("document", document_id)
    return document


CHUNK_FIELDS = (
    "id",
    "document_id",
    "collection_id",
    "position",
    "text",
    "token_count",
    "page",
    "heading_path",
    "start",
    "end",
)
"""What a chunk shows: never its embedding, which is kilobytes per row and of no use to a reader."""


def chunk_list(*, collection: Collection, document: Document | None = None) -> QuerySet[Chunk]:
    """The collection's chunks (or one document's), oldest first: by id, in which they were written, or in a
    document by position (callers have already checked they may see the collection)."""
    chunks = Chunk.objects.filter(collection=collection).only(*CHUNK_FIELDS)
    if document is not None:
        return chunks.filter(document=document).order_by("position")
    return chunks.order_by("id")
