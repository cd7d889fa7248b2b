"""Factories for knowledge: collections and documents are made through the services, as in real use."""

from __future__ import annotations

from typing import Any

import factory

from knowledge import services
from knowledge.models import Collection, Document
from tests.factories import TenantFactory


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
