"""Factories for knowledge: collections and documents are made through the services, as in real use."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import factory
import numpy as np

from knowledge import keywords, services
from knowledge.models import Collection, Document, PostingBlock
from knowledge.pipeline import document_claim
from tests.factories import TenantFactory

DIMENSIONS = 384
"""Of the local model's vectors, every collection's default embedder."""


class CollectionFactory(factory.django.DjangoModelFactory[Collection]):
    class Meta:
        model = Collection

    tenant = factory.SubFactory(TenantFactory)
    slug = factory.Sequence(lambda n: f"collection-{n}")
    name = factory.LazyAttribute(lambda c: c.slug.title())

    @classmethod
    def _create(cls, model_class: type[Collection], *args: Any, **kwargs: Any) -> Collection:
        return services.collection_create(**kwargs)


def add_document(collection: Collection, text: str, *, filename: str = "doc.txt", **kwargs: Any) -> Document:
    """A document submitted without queueing its task (the test ingests it when it wants)."""
    return services.document_submit(
        collection=collection, content=text.encode(), filename=filename, enqueue=False, **kwargs
    ).document


def add_ingested_document(collection: Collection, texts: list[str], **kwargs: Any) -> Document:
    """A ready document with one chunk per text, stored through the services with stand-in vectors (no model:
    the tests that use it read chunks, they do not search them)."""
    document = add_document(collection, "\n\n".join(texts), filename=f"{uuid.uuid4()}.txt", **kwargs)
    claimed = document_claim(document_id=document.pk)
    assert claimed is not None
    offsets = [0, *itertools.accumulate(len(text) + 2 for text in texts)]
    chunks: list[dict[str, Any]] = [
        {
            "text": text,
            "token_count": len(text.split()),
            "page": None,
            "heading_path": [],
            "start": offsets[i],
            "end": offsets[i] + len(text),
            "embedding": np.ones(DIMENSIONS, dtype=np.float32),
        }
        for i, text in enumerate(texts)
    ]
    stored = services.document_chunks_replace(
        document_id=document.pk, sha256=claimed.sha256, chunks=chunks, dimensions=DIMENSIONS
    )
    assert stored is not None
    return stored


def indexed_postings() -> list[tuple[str, int, int]]:
    """Every posting in the blocks as (term, chunk id, frequency), sorted."""
    found = []
    for text, data in PostingBlock.objects.values_list("term__text", "postings"):
        found += [(text, int(p["chunk"]), int(p["frequency"])) for p in np.frombuffer(data, dtype=keywords.POSTING)]
    return sorted(found)
