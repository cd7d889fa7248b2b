"""GET .../collections/{slug}/chunks/ and .../documents/{id}/chunks/: what ingestion made of the documents (text,
position, location, token count; never the embedding), for whoever may see the collection; 404 otherwise."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from aihub.access import services as access_services
from aihub.access.models import Membership
from knowledge.models import Collection, Document
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_problem
from tests.knowledge.factories import CollectionFactory, add_document, add_ingested_document

pytestmark = pytest.mark.django_db

TEXTS = ["Economy class for short flights.", "Business class over six hours.", "Trains within the country."]


@pytest.fixture
def collection(membership: Membership) -> Collection:
    return CollectionFactory.create(tenant=membership.tenant, slug="handbook")


@pytest.fixture
def document(collection: Collection) -> Document:
    return add_ingested_document(collection, TEXTS, title="Travel")


@pytest.fixture
def reader(membership: Membership, client_as: ClientAs) -> APIClient:
    """A plain member: sees and searches every collection."""
    return client_as(membership)


def chunks_url(collection: Collection, document: Document | None = None) -> str:
    base = f"/api/v1/{collection.tenant.slug}/collections/{collection.slug}/"
    return base + (f"documents/{document.pk}/chunks/" if document is not None else "chunks/")


def test_a_reader_lists_a_documents_chunks_in_order_without_their_embeddings(
    reader: APIClient, collection: Collection, document: Document
) -> None:
    body = reader.get(chunks_url(collection, document)).json()

    assert body.keys() == {"items", "total", "limit", "offset"}
    assert body["total"] == 3
    first = body["items"][0]
    assert first == {
        "id": first["id"],
        "document": str(document.pk),
        "position": 0,
        "text": TEXTS[0],
        "token_count": 5,
        "location": {"page": None, "heading_path": [], "start": 0, "end": len(TEXTS[0])},
    }
    assert [item["text"] for item in body["items"]] == TEXTS
    assert [item["position"] for item in body["items"]] == [0, 1, 2]


def test_a_documents_chunks_page_by_offset_and_by_cursor(
    reader: APIClient, collection: Collection, document: Document
) -> None:
    url = chunks_url(collection, document)
    assert [item["position"] for item in reader.get(url, {"limit": "2", "offset": "1"}).json()["items"]] == [1, 2]

    page = reader.get(url, {"cursor": "", "limit": "2"}).json()
    assert page.keys() == {"items", "limit", "next", "previous"}
    assert [item["position"] for item in page["items"]] == [0, 1]
    last = reader.get(page["next"]).json()
    assert ([item["position"] for item in last["items"]], last["next"]) == ([2], None)


def test_the_collections_chunks_are_every_documents_in_the_order_they_were_written(
    reader: APIClient, collection: Collection, document: Document
) -> None:
    later = add_ingested_document(collection, ["Hotels up to four stars."])

    body = reader.get(chunks_url(collection)).json()

    assert [(item["document"], item["position"]) for item in body["items"]] == [
        *((str(document.pk), position) for position in range(3)),
        (str(later.pk), 0),
    ]


def test_a_document_not_yet_ingested_has_no_chunks(reader: APIClient, collection: Collection) -> None:
    pending = add_document(collection, "Waiting for its turn.")

    assert reader.get(chunks_url(collection, pending)).json()["items"] == []


def test_chunks_the_caller_may_not_see_are_not_found(
    membership: Membership, collection: Collection, document: Document, client_as: ClientAs
) -> None:
    other = CollectionFactory.create(tenant=membership.tenant, slug="wiki")
    access_services.role_create(tenant=membership.tenant, name="wiki-only", rules=["aihub.user.collections.wiki"])
    narrow = client_as(MembershipFactory.create(tenant=membership.tenant, roles=["wiki-only"]))
    stranger = client_as(MembershipFactory.create(roles=["admin"]))

    for client in (narrow, stranger):
        assert_problem(client.get(chunks_url(collection, document)), 404)
        assert_problem(client.get(chunks_url(collection)), 404)
    # A document is found only in its own collection.
    body = assert_problem(client_as(membership).get(chunks_url(other, document)), 404)
    assert body["detail"] == f"No document '{document.pk}'."
    assert_problem(
        client_as(membership).get(chunks_url(collection).replace("chunks/", f"documents/{uuid.uuid4()}/chunks/")), 404
    )
    assert narrow.get(chunks_url(other)).json()["items"] == []


def test_a_cursor_page_of_a_documents_chunks_costs_a_fixed_number_of_statements(
    reader: APIClient, collection: Collection, document: Document
) -> None:
    first = reader.get(chunks_url(collection, document), {"cursor": "", "limit": "1"}).json()

    with CaptureQueriesContext(connection) as captured:
        second = reader.get(first["next"])
    assert second.status_code == 200
    # The collection (visibility), the document, the page: however many chunks, and no embedding read.
    statements = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert len(statements) == 3, "\n".join(statements)
    assert "embedding" not in statements[-1]
