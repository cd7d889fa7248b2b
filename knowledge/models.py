"""Knowledge: collections of documents, split into chunks that carry their embedding, and the keyword index.

The keyword index is ``Term`` and ``PostingBlock`` rows written with the chunks (``knowledge.keywords``); on
PostgreSQL the embedding also has HNSW indexes, created by the migration (``knowledge.operations``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from aihub.access.models import Tenant
from knowledge.fields import EmbeddingField


class Collection(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="collections")
    slug = models.SlugField(max_length=63)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Fixed once the collection exists: changing it means re-embedding every chunk (manage.py reembed).
    embedder = models.CharField(max_length=200, help_text="local/all-MiniLM-L6-v2 or openai/<model>")
    dimensions = models.PositiveIntegerField(default=0, help_text="Of the embedder's vectors; 0 until known.")
    chunk_size = models.PositiveIntegerField(default=200, help_text="Tokens per chunk at most.")
    chunk_overlap = models.PositiveIntegerField(default=40, help_text="Tokens repeated from the previous chunk.")
    # Bumped whenever the collection's chunks change, so in-process vector caches know when to reload.
    index_version = models.PositiveBigIntegerField(default=0, editable=False)
    # BM25's N and total length, kept by the keyword index's writes (knowledge.keywords).
    keyword_chunks = models.PositiveBigIntegerField(default=0, editable=False)
    keyword_terms = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "slug"]
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="collection_unique_slug_per_tenant")]

    def __str__(self) -> str:
        return self.slug


def document_upload_to(document: Document, filename: str) -> str:
    # The content hash in the name: a replacement never takes the old file's name, so deleting one is safe.
    return f"knowledge/{document.collection.tenant_id}/{document.collection_id}/{document.id}-{document.sha256[:16]}"


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500)
    # Where it came from (a path, a URL, a client's key): a new upload with the same source replaces it.
    source = models.CharField(max_length=1000, blank=True)
    media_type = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to=document_upload_to, max_length=500)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["collection", "sha256"], name="knowledge_doc_sha"),
            models.Index(fields=["collection", "source"], name="knowledge_doc_source"),
            models.Index(fields=["collection", "status"], name="knowledge_doc_status"),
        ]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    id = models.BigAutoField(primary_key=True)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised from the document so the search index filters by collection without a join.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading_path = models.JSONField(default=list, blank=True)
    start = models.PositiveIntegerField(help_text="Character offset in the extracted text.")
    end = models.PositiveIntegerField()
    dimensions = models.PositiveIntegerField()
    embedding = EmbeddingField()
    term_count = models.PositiveIntegerField(default=0, help_text="Terms the keyword index took from the text.")

    class Meta:
        ordering = ["document", "position"]
        constraints = [models.UniqueConstraint(fields=["document", "position"], name="chunk_unique_position")]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"

    def location(self) -> dict[str, Any]:
        return chunk_location(page=self.page, heading_path=self.heading_path, start=self.start, end=self.end)


def chunk_location(*, page: int | None, heading_path: list[str], start: int, end: int) -> dict[str, Any]:
    """Where a chunk came from, as hits and the chunk API show it (also built from bare columns by search)."""
    return {"page": page, "heading_path": heading_path, "start": start, "end": end}


class Term(models.Model):
    """A word of a collection's keyword index (its stem), with what BM25 needs to know of it."""

    id = models.BigAutoField(primary_key=True)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=64)
    chunk_count = models.PositiveIntegerField(help_text="Chunks holding it: the document frequency.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "text"], name="term_unique_per_collection")]

    def __str__(self) -> str:
        return self.text


class PostingBlock(models.Model):
    """Up to ``keywords.BLOCK_POSTINGS`` postings of a term, packed as ``keywords.POSTING`` records: the chunk,
    how often the term is in it, and the chunk's length in terms (so scoring needs no join). ``first_chunk`` and
    ``last_chunk`` are the least and greatest chunk ids in it, for finding a chunk's postings when it goes."""

    id = models.BigAutoField(primary_key=True)
    term = models.ForeignKey(Term, on_delete=models.CASCADE, related_name="+")
    size = models.PositiveIntegerField()
    first_chunk = models.BigIntegerField()
    last_chunk = models.BigIntegerField()
    postings = models.BinaryField()

    def __str__(self) -> str:
        return f"{self.term_id}: {self.size} postings"
