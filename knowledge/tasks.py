"""Celery tasks of knowledge: thin, idempotent, taking ids and loading fresh rows."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.conf import settings

from knowledge import pipeline


@shared_task(
    name="knowledge.ingest_document",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.KNOWLEDGE_INGEST_SOFT_TIME_LIMIT_SECONDS,
    time_limit=settings.KNOWLEDGE_INGEST_TIME_LIMIT_SECONDS,
)
def ingest_document(document_id: str) -> str:
    """Extract, chunk, embed and index one document; a document someone else claimed is left alone."""
    return pipeline.document_ingest(document_id=uuid.UUID(document_id))
