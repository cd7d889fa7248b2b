"""Ingesting one document: claim it, extract, chunk, embed in batches, then swap its chunks atomically.

Idempotent: a document is claimed with a conditional update (``pending → processing``, or ``processing`` left
behind by a worker that died), so a second claimer gets nothing; the result is stored only if the document
still has the bytes that were claimed. Any failure marks this document ``failed`` with a reason and touches
no other document.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from aihub.extraction import ExtractionError, extract_text
from knowledge import services
from knowledge.chunking import chunk_text
from knowledge.embedders import EmbeddingError, get_embedder
from knowledge.models import Collection, Document

logger = logging.getLogger(__name__)


def document_claim(*, document_id: uuid.UUID) -> Document | None:
    """Take the document for ingestion, or None when someone else has it (or it needs none)."""
    stale = timezone.now() - timedelta(seconds=settings.KNOWLEDGE_INGEST_TIME_LIMIT_SECONDS)
    claimable = Q(status=Document.Status.PENDING) | Q(status=Document.Status.PROCESSING, updated_at__lt=stale)
    claimed = Document.objects.filter(claimable, pk=document_id).update(
        status=Document.Status.PROCESSING, error="", updated_at=timezone.now()
    )
    if not claimed:
        return None
    return Document.objects.select_related("collection").get(pk=document_id)


def embed_in_batches(texts: list[str], *, embedder_name: str) -> Any:
    import numpy as np

    embedder = get_embedder(embedder_name)
    size = max(1, settings.KNOWLEDGE_EMBED_BATCH_SIZE)
    parts = [embedder.embed(texts[i : i + size]) for i in range(0, len(texts), size)]
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def prepare_chunks(document: Document, content: bytes, collection: Collection) -> tuple[list[dict[str, Any]], int]:
    """Extract, chunk and embed: the chunk rows to store and the vectors' dimension. Raises ExtractionError,
    EmbeddingError or ValueError with a reason for a person."""
    extracted = extract_text(content, document.media_type)
    if not extracted.text.strip():
        raise ValueError("The document has no text (a scanned PDF needs OCR first).")
    embedder = get_embedder(collection.embedder)
    size = min(collection.chunk_size, embedder.max_tokens)
    pieces = chunk_text(extracted, size=size, overlap=collection.chunk_overlap, count_tokens=embedder.count_tokens)
    if not pieces:
        raise ValueError("The document has no text to index.")
    vectors = embed_in_batches([p.text for p in pieces], embedder_name=collection.embedder)
    rows = [
        {
            "text": p.text,
            "token_count": p.token_count,
            "page": p.page,
            "heading_path": p.heading_path,
            "start": p.start,
            "end": p.end,
            "embedding": vectors[i],
        }
        for i, p in enumerate(pieces)
    ]
    return rows, int(vectors.shape[1])


def document_ingest(*, document_id: uuid.UUID) -> str:
    """Ingest the document if it is waiting; returns what happened: ready, failed, superseded, not claimed."""
    document = document_claim(document_id=document_id)
    if document is None:
        return "not claimed"
    sha256 = document.sha256
    try:
        with document.file.open("rb") as handle:
            content = handle.read()
        rows, dimensions = prepare_chunks(document, content, document.collection)
    except (ExtractionError, EmbeddingError, ValueError, OSError) as exc:
        services.document_fail(document_id=document.pk, sha256=sha256, reason=str(exc) or type(exc).__name__)
        return "failed"
    except Exception as exc:
        logger.exception("ingesting document %s failed", document.pk)
        services.document_fail(document_id=document.pk, sha256=sha256, reason=f"Unexpected error: {type(exc).__name__}")
        return "failed"
    stored = services.document_chunks_replace(
        document_id=document.pk, sha256=sha256, chunks=rows, dimensions=dimensions
    )
    return "ready" if stored is not None else "superseded"


@dataclass(frozen=True)
class FileIngested:
    """What became of one file: its outcome, the chunks it now has, and the reason when it failed."""

    outcome: Literal["added", "unchanged", "replaced", "failed"]
    chunks: int = 0
    error: str = ""


def file_ingest(*, collection: Collection, path: Path, metadata: dict[str, Any], queue: bool) -> FileIngested:
    """Submit a file from disk like an upload (its path the source) and, unless ``queue``, ingest it here.

    Interrupted (Ctrl-C) after its submission, the document is abandoned (removed if this call added it, marked
    failed if it replaced one; kept if it became ready) and the interrupt goes on: nothing is left half-ingested.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        return FileIngested("failed", error=f"cannot read it ({exc.strerror or exc})")
    try:
        submitted = services.document_submit(
            collection=collection,
            content=content,
            filename=path.name,
            source=str(path),
            metadata=metadata,
            enqueue=queue,
        )
    except (services.UnsupportedDocument, services.DocumentTooLarge) as exc:
        return FileIngested("failed", error=str(exc))
    if submitted.outcome == "unchanged" or queue:
        return FileIngested(submitted.outcome)
    try:
        document_ingest(document_id=submitted.document.pk)
    except KeyboardInterrupt:
        services.document_abandon(document_id=submitted.document.pk, added=submitted.outcome == "added")
        raise
    document = Document.objects.get(pk=submitted.document.pk)
    if document.status == Document.Status.FAILED:
        return FileIngested("failed", error=document.error)
    return FileIngested(submitted.outcome, chunks=document.chunk_count)
