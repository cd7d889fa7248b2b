"""/api/v1/{tenant}/collections/... and /api/v1/{tenant}/search.

Seeing and searching a collection needs aihub.user.collections.<slug>, changing it (and its documents)
aihub.admin.collections.<slug>; a collection the caller may not see answers 404 like one that does not exist.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from aihub.access import services as access_services
from aihub.access.models import Membership, Tenant
from knowledge.embedders import Embedder
from knowledge.models import Collection, Document
from knowledge.pipeline import document_ingest
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.knowledge.factories import CollectionFactory, add_document

pytestmark = pytest.mark.django_db


def url(tenant: Tenant, *rest: str) -> str:
    return "/".join([f"/api/v1/{tenant.slug}", *rest])


@pytest.fixture
def manager(db: None) -> Membership:
    return MembershipFactory.create(roles=["knowledge-admin"])


@pytest.fixture
def client(manager: Membership, client_as: ClientAs) -> APIClient:
    return client_as(manager)


@pytest.fixture
def collection(manager: Membership, minilm: Embedder) -> Collection:
    return CollectionFactory.create(tenant=manager.tenant, slug="handbook")


def ingest_all(collection: Collection) -> None:
    for document in Document.objects.filter(collection=collection, status=Document.Status.PENDING):
        document_ingest(document_id=document.pk)


def test_a_knowledge_admin_creates_lists_renames_and_deletes_a_collection(
    manager: Membership, client: APIClient, minilm: Embedder
) -> None:
    created = client.post(url(manager.tenant, "collections/"), {"slug": "wiki", "name": "Wiki"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json() | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None,
        "slug": "wiki",
        "name": "Wiki",
        "description": "",
        "embedder": "local/all-MiniLM-L6-v2",
        "dimensions": 384,
        "chunk_size": 200,
        "chunk_overlap": 40,
        "document_count": 0,
        "created_at": None,
        "updated_at": None,
    }
    assert client.get(url(manager.tenant, "collections/")).json()["total"] == 1
    renamed = client.patch(url(manager.tenant, "collections/wiki/"), {"name": "Team wiki"}, format="json")
    assert renamed.json()["name"] == "Team wiki"
    assert client.delete(url(manager.tenant, "collections/wiki/")).status_code == 204
    assert not Collection.objects.exists()


def test_collection_input_is_checked(manager: Membership, client: APIClient, collection: Collection) -> None:
    assert_invalid(client.post(url(manager.tenant, "collections/"), {"slug": "handbook"}, format="json"), "slug")
    assert_invalid(
        client.post(url(manager.tenant, "collections/"), {"slug": "x", "embedder": "magic"}, format="json"), "embedder"
    )
    assert_invalid(
        client.post(url(manager.tenant, "collections/"), {"slug": "y", "chunk_size": 5000}, format="json"), "chunk_size"
    )
    assert_invalid(
        client.post(url(manager.tenant, "collections/"), {"slug": "z", "colour": 1}, format="json"), "colour"
    )


def test_members_only_read_and_other_tenants_see_nothing(
    manager: Membership, collection: Collection, client_as: ClientAs
) -> None:
    member = MembershipFactory.create(tenant=manager.tenant, roles=["member"])
    reader = client_as(member)
    assert reader.get(url(manager.tenant, "collections/handbook/")).status_code == 200
    assert_problem(reader.post(url(manager.tenant, "collections/"), {"slug": "mine"}, format="json"), 403)
    assert_problem(
        reader.post(url(manager.tenant, "collections/handbook/documents/"), {"text": "x"}, format="json"), 403
    )
    assert_problem(reader.delete(url(manager.tenant, "collections/handbook/")), 403)

    access_services.role_create(tenant=manager.tenant, name="wiki-only", rules=["aihub.user.collections.wiki"])
    narrow = client_as(MembershipFactory.create(tenant=manager.tenant, roles=["wiki-only"]))
    assert_problem(narrow.get(url(manager.tenant, "collections/handbook/")), 404)
    assert narrow.get(url(manager.tenant, "collections/")).json()["total"] == 0
    assert_problem(
        narrow.post(url(manager.tenant, "search"), {"query": "x", "collections": ["handbook"]}, format="json"), 404
    )

    stranger = client_as(MembershipFactory.create(roles=["admin"]))
    assert_problem(stranger.get(url(manager.tenant, "collections/handbook/")), 404)


def test_upload_a_file_then_it_is_ingested_listed_downloaded_and_found(
    manager: Membership, client: APIClient, collection: Collection
) -> None:
    upload = SimpleUploadedFile("guide.md", b"# Guide\n\nPress the red button to start the turbine.", "text/plain")
    created = client.post(
        url(manager.tenant, "collections/handbook/documents/"),
        {"file": upload, "metadata": '{"team": "ops"}', "source": "docs/guide.md"},
        format="multipart",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["media_type"], body["outcome"], body["metadata"]) == (
        "pending",
        "text/markdown",
        "added",
        {"team": "ops"},
    )
    ingest_all(collection)
    detail = client.get(url(manager.tenant, f"collections/handbook/documents/{body['id']}/")).json()
    assert detail["status"] == "ready" and detail["chunk_count"] == 1

    content = client.get(url(manager.tenant, f"collections/handbook/documents/{body['id']}/content"))
    assert content.status_code == 200 and content["Content-Type"] == "text/markdown"
    assert content.getvalue() == b"# Guide\n\nPress the red button to start the turbine."

    found = client.post(
        url(manager.tenant, "collections/handbook/search"), {"query": "how do I start the turbine?"}, format="json"
    )
    assert found.status_code == 200, found.content
    hit = found.json()["hits"][0]
    assert hit["document"]["id"] == body["id"] and "red button" in hit["text"]
    assert hit["location"]["heading_path"] == ["Guide"]

    again = client.post(
        url(manager.tenant, "collections/handbook/documents/"),
        {"file": SimpleUploadedFile("copy.md", b"# Guide\n\nPress the red button to start the turbine.")},
        format="multipart",
    )
    assert again.status_code == 200 and again.json()["outcome"] == "unchanged" and again.json()["id"] == body["id"]


def test_too_large_and_unreadable_uploads_are_refused_and_nothing_is_kept(
    manager: Membership, client: APIClient, collection: Collection, settings: Any
) -> None:
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 100
    documents = url(manager.tenant, "collections/handbook/documents/")
    big = client.post(documents, {"file": SimpleUploadedFile("big.txt", b"a" * 101)}, format="multipart")
    assert_problem(big, 413)
    image = client.post(
        documents, {"file": SimpleUploadedFile("photo.txt", b"\x89PNG\r\n\x1a\n" + b"0" * 20)}, format="multipart"
    )
    assert "image/png" in assert_problem(image, 415)["detail"]
    assert_invalid(client.post(documents, {"title": "nothing"}, format="json"), "file")
    assert not Document.objects.exists()


def test_documents_from_text_listed_with_filters_updated_and_deleted(
    manager: Membership, client: APIClient, collection: Collection
) -> None:
    documents = url(manager.tenant, "collections/handbook/documents/")
    for title, team in (("Alpha notes", "ops"), ("Beta notes", "dev"), ("Gamma plan", "ops")):
        response = client.post(documents, {"text": f"{title} text.", "title": title, "metadata": {"team": team}})
        assert response.status_code == 201, response.content
    ingest_all(collection)
    assert client.get(documents, {"metadata": '{"team": "ops"}'}).json()["total"] == 2
    assert [d["title"] for d in client.get(documents, {"title": "notes"}).json()["items"]] == [
        "Beta notes",
        "Alpha notes",
    ]
    assert client.get(documents, {"status": "failed"}).json()["total"] == 0
    assert_invalid(client.get(documents, {"status": "bogus"}), "status")

    gamma = Document.objects.get(title="Gamma plan")
    patched = client.patch(f"{documents}{gamma.pk}/", {"metadata": {"team": "dev"}}, format="json")
    assert patched.json()["metadata"] == {"team": "dev"}
    assert client.delete(f"{documents}{gamma.pk}/").status_code == 204
    assert_problem(client.get(f"{documents}{gamma.pk}/"), 404)
    assert client.get(documents).json()["total"] == 2


def test_search_across_collections_with_filters_and_bad_requests(
    manager: Membership, client: APIClient, collection: Collection
) -> None:
    other = CollectionFactory.create(tenant=manager.tenant, slug="faq")
    add_document(collection, "Vacation days roll over until March.", metadata={"year": 2024})
    add_document(other, "Vacation requests go through the HR portal.", metadata={"year": 2025})
    ingest_all(collection)
    ingest_all(other)
    search = url(manager.tenant, "search")
    both = client.post(search, {"query": "vacation", "mode": "keyword", "top_k": 10}, format="json").json()
    assert {hit["collection"] for hit in both["hits"]} == {"handbook", "faq"}
    narrowed = client.post(
        search, {"query": "vacation", "collections": ["faq"], "filters": {"year": {"gte": 2025}}}, format="json"
    ).json()
    assert [hit["collection"] for hit in narrowed["hits"]] == ["faq"]

    assert_invalid(client.post(search, {"query": ""}, format="json"), "query")
    assert_invalid(client.post(search, {"query": "x" * 5000}, format="json"), "query")
    assert_invalid(client.post(search, {"query": "x", "mode": "magic"}, format="json"), "mode")
    assert_invalid(client.post(search, {"query": "x", "filters": {"colour": "red"}}, format="json"), "filters")
    assert_invalid(client.post(search, {"query": "x", "alpha": 1.2}, format="json"), "alpha")
    assert_invalid(client.post(search, {"query": "x", "alpha": "lots"}, format="json"), "alpha")
    assert_invalid(client.post(search, {"query": "x", "candidates": 1001}, format="json"), "candidates")
    assert_invalid(client.post(search, {"query": "x", "top_k": 20, "candidates": 10}, format="json"), "candidates")
    assert_problem(client.post(search, {"query": "x", "collections": ["nope"]}, format="json"), 404)


def test_hybrid_search_takes_the_fusion_weight_and_the_candidate_depth(
    manager: Membership, client: APIClient, collection: Collection
) -> None:
    add_document(collection, "The error code XK-4471 means the flux capacitor overheated.", title="code")
    add_document(collection, "Cats are small domesticated felines that purr and hunt mice.", title="cats")
    ingest_all(collection)
    search = url(manager.tenant, f"collections/{collection.slug}/search")
    query = "XK-4471 a kitten chasing rodents"

    def first(**body: Any) -> str:
        response = client.post(search, {"query": query, "top_k": 1, **body}, format="json")
        assert response.status_code == 200, response.json()
        return str(response.json()["hits"][0]["document"]["title"])

    assert first(alpha=1.0, candidates=2) == "cats"
    assert first(alpha=0.0, candidates=2) == "code"


def test_the_openapi_schema_documents_the_hybrid_parameters(client: APIClient) -> None:
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    fields = schema["components"]["schemas"]["SearchRequest"]["properties"]
    assert fields["alpha"]["minimum"] == 0 and fields["alpha"]["maximum"] == 1
    assert fields["candidates"]["maximum"] == 1000
    operation = schema["paths"]["/api/v1/{tenant}/collections/{slug}/search"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert any("alpha" in example["value"] for example in examples.values())
