"""Operators manage knowledge in the admin: create collections, upload documents, re-ingest, delete, search."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from aihub.access.models import Tenant
from knowledge.embedders import Embedder
from knowledge.models import Chunk, Collection, Document
from knowledge.pipeline import document_ingest
from tests.factories import TenantFactory, UserFactory
from tests.helpers import drain_sent_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_site(db: None) -> Client:
    client = Client()
    client.force_login(UserFactory.create(username="operator", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def tenant(minilm: Embedder) -> Tenant:
    return TenantFactory.create()


def test_an_operator_creates_a_collection_uploads_searches_and_deletes(
    admin_site: Client, tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    response = admin_site.post(
        reverse("admin:knowledge_collection_add"),
        {
            "tenant": tenant.pk,
            "slug": "manuals",
            "name": "Manuals",
            "description": "",
            "embedder": "local/all-MiniLM-L6-v2",
            "chunk_size": 128,
            "chunk_overlap": 16,
        },
    )
    assert response.status_code == 302, response.content
    collection = Collection.objects.get(slug="manuals")
    assert (collection.dimensions, collection.chunk_size) == (384, 128)

    drain_sent_tasks("knowledge.ingest_document")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_site.post(
            reverse("admin:knowledge_document_add"),
            {
                "collection": collection.pk,
                "upload": SimpleUploadedFile("pump.md", b"# Pump\n\nBleed the pump before the first start."),
                "title": "",
                "source": "",
                "metadata": '{"model": "P-100"}',
            },
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    document = Document.objects.get()
    assert drain_sent_tasks("knowledge.ingest_document") == [str(document.pk)]
    assert (document.title, document.media_type, document.metadata) == ("pump.md", "text/markdown", {"model": "P-100"})
    document_ingest(document_id=document.pk)

    search_url = reverse("admin:knowledge_collection_search", args=[collection.pk])
    page = admin_site.get(search_url, {"query": "bleed the pump", "mode": "hybrid", "top_k": "5"})
    assert page.status_code == 200
    assert b"Bleed the pump before the first start." in page.content and b"pump.md" in page.content
    assert b"No hits." not in page.content

    response = admin_site.post(
        reverse("admin:knowledge_document_changelist"),
        {"action": "delete_documents", "_selected_action": [str(document.pk)]},
    )
    assert response.status_code == 302
    assert not Document.objects.exists() and not Chunk.objects.exists()


def test_an_unreadable_upload_is_refused_with_a_message(admin_site: Client, tenant: Tenant) -> None:
    collection = Collection.objects.create(tenant=tenant, slug="c", name="c", embedder="local/all-MiniLM-L6-v2")
    response = admin_site.post(
        reverse("admin:knowledge_document_add"),
        {"collection": collection.pk, "upload": SimpleUploadedFile("x.txt", b"\x00\x01binary"), "metadata": "{}"},
        follow=True,
    )
    assert b"Cannot read" in response.content
    assert not Document.objects.exists()


def test_failed_documents_are_queued_again_by_the_reingest_action(
    admin_site: Client, tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    collection = Collection.objects.create(tenant=tenant, slug="c", name="c", embedder="local/all-MiniLM-L6-v2")
    from knowledge import services

    document = services.document_submit(collection=collection, content=b"   ", filename="e.txt", enqueue=False).document
    assert document_ingest(document_id=document.pk) == "failed"
    response = admin_site.post(
        reverse("admin:knowledge_document_changelist"), {"action": "reingest", "_selected_action": [str(document.pk)]}
    )
    assert response.status_code == 302
    document.refresh_from_db()
    assert (document.status, document.error) == ("pending", "")
