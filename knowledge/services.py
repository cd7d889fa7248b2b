"""Every write to knowledge: collections, documents, and the atomic replacement of a document's chunks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aihub.access.models import Tenant
from aihub.celery import task_send
from aihub.extraction import TEXT_MEDIA_TYPES, normalize_media_type, sniff_media_type
from knowledge import keywords
from knowledge.embedders import EmbeddingError, get_embedder, validate_embedder_name
from knowledge.models import Chunk, Collection, Document

Outcome = Literal["added", "unchanged", "replaced"]

MAX_TITLE_CHARS = 500
_TEXT_FORMATS = frozenset({"text/plain", "text/markdown", "text/html", "text/csv", "application/json"})
_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class UnsupportedDocument(Exception):
    """The bytes are not a kind of document knowledge can read (415 on the API)."""


class DocumentTooLarge(Exception):
    """Larger than KNOWLEDGE_MAX_UPLOAD_BYTES (413 on the API)."""


# --- Collections -------------------------------------------------------------------------------------------------


def collection_create(
    *,
    tenant: Tenant,
    slug: str,
    name: str = "",
    description: str = "",
    embedder: str | None = None,
    chunk_size: int = 200,
    chunk_overlap: int = 40,
) -> Collection:
    embedder = embedder or settings.KNOWLEDGE_DEFAULT_EMBEDDER
    try:
        validate_embedder_name(embedder)
    except EmbeddingError as exc:
        raise ValidationError({"embedder": str(exc)}) from exc
    model = get_embedder(embedder)
    _check_chunking(embedder, chunk_size, chunk_overlap)
    with transaction.atomic():
        if Collection.objects.filter(tenant=tenant, slug=slug).exists():
            raise ValidationError({"slug": f"The tenant already has a collection {slug!r}."})
        # The local model's dimension is known; a remote model's is learnt from its first vectors.
        dimensions = model.dimensions if embedder == "local/all-MiniLM-L6-v2" else 0
        return Collection.objects.create(
            tenant=tenant,
            slug=slug,
            name=name or slug,
            description=description,
            embedder=embedder,
            dimensions=dimensions,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
        )


def _check_chunking(embedder: str, chunk_size: int, chunk_overlap: int) -> None:
    limit = get_embedder(embedder).max_tokens
    if not 16 <= chunk_size <= limit:
        raise ValidationError({"chunk_size": f"Must be between 16 and {limit} tokens for {embedder}."})
    if not 0 <= chunk_overlap <= chunk_size // 2:
        raise ValidationError({"chunk_overlap": "Must be between 0 and half the chunk size."})


def collection_update(*, collection: Collection, name: str | None = None, description: str | None = None) -> Collection:
    """Name and description only: the embedder and chunking are fixed (``manage.py reembed`` changes them)."""
    if name is not None:
        collection.name = name
    if description is not None:
        collection.description = description
    collection.save(update_fields=["name", "description", "updated_at"])
    return collection


def collection_delete(*, collection: Collection) -> None:
    # The documents' stored files leave storage once this commits (django-cleanup, on every model deletion).
    collection.delete()


def collection_settings_change(
    *,
    collection: Collection,
    embedder: str | None = None,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    enqueue: bool = True,
) -> Collection:
    """Change the embedder or chunking and queue every document again (``manage.py reembed``).

    Until a document is re-ingested its old chunks stay searchable only by keyword: vector search compares
    vectors of the collection's current dimension.
    """
    with transaction.atomic():
        collection = Collection.objects.select_for_update().get(pk=collection.pk)
        if embedder is not None and embedder != collection.embedder:
            try:
                validate_embedder_name(embedder)
            except EmbeddingError as exc:
                raise ValidationError({"embedder": str(exc)}) from exc
            collection.embedder = embedder
            collection.dimensions = get_embedder(embedder).dimensions if embedder.startswith("local/") else 0
        if chunk_size is not None:
            collection.chunk_size = chunk_size
        if chunk_overlap is not None:
            collection.chunk_overlap = chunk_overlap
        _check_chunking(collection.embedder, collection.chunk_size, collection.chunk_overlap)
        collection.save()
        ids = list(Document.objects.filter(collection=collection).values_list("id", flat=True))
        Document.objects.filter(pk__in=ids).update(status=Document.Status.PENDING, error="", updated_at=timezone.now())
        if enqueue:
            transaction.on_commit(lambda: _enqueue(ids))
    return collection


# --- Documents -----------------------------------------------------------------------------------------------


def _delete_files(names: list[str]) -> None:
    storage = Document._meta.get_field("file").storage
    for name in names:
        if name:
            storage.delete(name)


def _enqueue(document_ids: list[Any]) -> None:
    for document_id in document_ids:
        task_send("knowledge.ingest_document", str(document_id))


def clean_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError({"metadata": "Must be an object."})
    for key, value in metadata.items():
        if not _METADATA_KEY.match(str(key)):
            raise ValidationError({"metadata": f"Invalid key {str(key)[:70]!r}: letters, digits, _ . - (64 at most)."})
        if isinstance(value, dict):
            raise ValidationError({"metadata": f"The value of {key!r} must be a string, number, boolean or list."})
    return metadata


@dataclass
class Submitted:
    document: Document
    outcome: Outcome


def document_submit(
    *,
    collection: Collection,
    content: bytes,
    filename: str = "",
    title: str = "",
    source: str = "",
    metadata: dict[str, Any] | None = None,
    media_type: str | None = None,
    enqueue: bool = True,
) -> Submitted:
    """Add a document, or recognise it: the same bytes in the collection are ``unchanged``; other bytes from the
    same ``source`` replace that document (its chunks are swapped atomically once the new ones are ready).

    The type is sniffed from the bytes (a declared ``media_type`` only decides between text formats); what
    knowledge cannot read raises UnsupportedDocument, more than KNOWLEDGE_MAX_UPLOAD_BYTES DocumentTooLarge.
    With ``enqueue`` the ingestion task is queued after commit; without, the caller ingests
    (``knowledge.pipeline.document_ingest``), as ``manage.py ingest`` does inline.
    """
    if len(content) > settings.KNOWLEDGE_MAX_UPLOAD_BYTES:
        raise DocumentTooLarge(
            f"The document is {len(content)} bytes; the limit is {settings.KNOWLEDGE_MAX_UPLOAD_BYTES} bytes."
        )
    sniffed = sniff_media_type(content, filename or None)
    declared = normalize_media_type(media_type)
    if sniffed in _TEXT_FORMATS and declared in _TEXT_FORMATS:
        # Text is text: the declared format only says how to read it (markdown headings, CSV rows).
        sniffed = declared
    if sniffed not in TEXT_MEDIA_TYPES:
        raise UnsupportedDocument(
            f"Cannot read {filename or 'this document'!r} as a document (it looks like {sniffed}); "
            "knowledge reads txt, md, html, pdf, docx, csv and json."
        )
    metadata = clean_metadata(metadata)
    title = (title or filename.rsplit("/", 1)[-1] or source or "Untitled")[:MAX_TITLE_CHARS]
    sha256 = hashlib.sha256(content).hexdigest()
    stored: list[str] = []
    try:
        with transaction.atomic():
            submitted = _submit_locked(collection, content, filename, title, source, metadata, sniffed, sha256, stored)
            if enqueue and submitted.outcome != "unchanged":
                document_id = submitted.document.pk
                transaction.on_commit(lambda: _enqueue([document_id]))
    except BaseException:
        # The row was rolled back: the file written for it must go too.
        _delete_files(stored)
        raise
    return submitted


def _submit_locked(
    collection: Collection,
    content: bytes,
    filename: str,
    title: str,
    source: str,
    metadata: dict[str, Any],
    media_type: str,
    sha256: str,
    stored: list[str],
) -> Submitted:
    # One submitter at a time per collection, so two uploads of the same bytes cannot both be "added".
    Collection.objects.select_for_update().filter(pk=collection.pk).first()
    existing = Document.objects.filter(collection=collection, sha256=sha256).first()
    if existing is not None:
        return Submitted(existing, "unchanged")
    replaced = Document.objects.filter(collection=collection, source=source).first() if source else None
    if replaced is not None:
        replaced.title, replaced.media_type, replaced.size, replaced.sha256 = title, media_type, len(content), sha256
        replaced.metadata = metadata or replaced.metadata
        replaced.status, replaced.error = Document.Status.PENDING, ""
        replaced.file.save(filename or "document", ContentFile(content), save=False)
        stored.append(replaced.file.name)
        replaced.save()  # the old file leaves storage on commit (django-cleanup)
        return Submitted(replaced, "replaced")
    document = Document(
        collection=collection,
        title=title,
        source=source,
        media_type=media_type,
        size=len(content),
        sha256=sha256,
        metadata=metadata,
    )
    document.file.save(filename or "document", ContentFile(content), save=False)
    stored.append(document.file.name)
    document.save()
    return Submitted(document, "added")


def document_update(
    *, document: Document, title: str | None = None, metadata: dict[str, Any] | None = None
) -> Document:
    if title is not None:
        document.title = title[:MAX_TITLE_CHARS]
    if metadata is not None:
        document.metadata = clean_metadata(metadata)
    document.save(update_fields=["title", "metadata", "updated_at"])
    return document


def document_reingest(*, document: Document) -> Document:
    """Queue the document again (after a failure, or a change of the collection's settings)."""
    with transaction.atomic():
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.PENDING, error="", updated_at=timezone.now()
        )
        document_id = document.pk
        transaction.on_commit(lambda: _enqueue([document_id]))
    document.refresh_from_db()
    return document


def document_delete(*, document: Document) -> None:
    """Remove the document, its chunks (from every index) and its stored file."""
    with transaction.atomic():
        collection_id = document.collection_id
        keywords.chunks_unindex(collection_id=collection_id, chunks=Chunk.objects.filter(document=document))
        document.delete()  # its file leaves storage on commit (django-cleanup)
        Collection.objects.filter(pk=collection_id).update(index_version=F("index_version") + 1)


def document_abandon(*, document_id: Any, added: bool) -> None:
    """An ingestion stopped part-way (Ctrl-C in ``manage.py ingest``): the document goes if it was just ``added``,
    else it is marked failed, so no search sees it half-done; one that became ready is kept."""
    document = Document.objects.filter(pk=document_id).first()
    if document is None or document.status == Document.Status.READY:
        return
    if added:
        document_delete(document=document)
    else:
        document_fail(
            document_id=document.pk,
            sha256=document.sha256,
            reason="Interrupted before it was indexed; ingest it again.",
        )


def collection_keywords_rebuild(*, collection: Collection, progress: Callable[[int], None] | None = None) -> int:
    """Build the collection's keyword index again from its chunks' text, in one transaction (searches see the old
    index until it commits; ingestion into this collection waits for it). Returns the chunks indexed."""
    with transaction.atomic():
        return keywords.collection_reindex(collection=collection, progress=progress)


# --- Chunks --------------------------------------------------------------------------------------------------


def document_chunks_replace(
    *, document_id: Any, sha256: str, chunks: list[dict[str, Any]], dimensions: int
) -> Document | None:
    """Swap the document's chunks for ``chunks`` in one transaction and mark it ready.

    Nothing happens (None) when the document changed since it was claimed (other bytes, deleted, or no longer
    processing): a newer ingestion owns it. Searches see the old chunks or the new ones, never a mix.
    """
    with transaction.atomic():
        document = Document.objects.select_for_update().filter(pk=document_id).first()
        if document is None or document.sha256 != sha256 or document.status != Document.Status.PROCESSING:
            return None
        old = Chunk.objects.filter(document=document)
        keywords.chunks_unindex(collection_id=document.collection_id, chunks=old)
        old.delete()
        created = keywords.chunks_store(
            collection_id=document.collection_id,
            chunks=[
                Chunk(document=document, collection_id=document.collection_id, position=i, dimensions=dimensions, **c)
                for i, c in enumerate(chunks)
            ],
        )
        document.status, document.error = Document.Status.READY, ""
        document.chunk_count = len(created)
        document.ingested_at = timezone.now()
        document.save(update_fields=["status", "error", "chunk_count", "ingested_at", "updated_at"])
        Collection.objects.filter(pk=document.collection_id).update(index_version=F("index_version") + 1)
        Collection.objects.filter(pk=document.collection_id, dimensions=0).update(dimensions=dimensions)
    return document


def document_fail(*, document_id: Any, sha256: str, reason: str) -> None:
    """Mark the document failed (and drop its chunks, which belong to bytes it no longer has)."""
    with transaction.atomic():
        document = Document.objects.select_for_update().filter(pk=document_id, sha256=sha256).first()
        if document is None:
            return
        old = Chunk.objects.filter(document=document)
        keywords.chunks_unindex(collection_id=document.collection_id, chunks=old)
        old.delete()
        document.status, document.error, document.chunk_count = Document.Status.FAILED, reason[:2000], 0
        document.save(update_fields=["status", "error", "chunk_count", "updated_at"])
        Collection.objects.filter(pk=document.collection_id).update(index_version=F("index_version") + 1)
