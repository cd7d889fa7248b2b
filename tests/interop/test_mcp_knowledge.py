"""The MCP ``knowledge_search`` tool searches the caller's collections only (the handler called as the SDK's
runner calls it, with the authenticated caller in place; the protocol itself is covered in test_mcp.py)."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from asgiref.sync import async_to_sync

from aihub.access.models import Membership
from aihub.access.principal import principal_for
from aihub.interop import mcp
from knowledge.models import Collection
from knowledge.pipeline import document_ingest
from tests.factories import MembershipFactory, TenantFactory
from tests.knowledge.factories import CollectionFactory, add_document

# The handlers do their ORM work through database_sync_to_async, which closes connections inside a test's
# transaction (on PostgreSQL): these tests commit for real instead.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")


def search_as(membership: Membership, **arguments: Any) -> types.CallToolResult:
    principal = principal_for(user=membership.user, tenant_ref=membership.tenant.slug)

    async def call() -> types.CallToolResult:
        token = mcp._caller.set(mcp.McpCaller(principal=principal))
        try:
            params = types.CallToolRequestParams(name=mcp.KNOWLEDGE_SEARCH, arguments=arguments)
            return await mcp.call_tool(None, params)
        finally:
            mcp._caller.reset(token)

    return async_to_sync(call)()


def text(result: types.CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


def collection_with(tenant: Any, slug: str, text: str) -> Collection:
    collection = CollectionFactory.create(tenant=tenant, slug=slug)
    document = add_document(collection, text, title=f"{slug} manual", filename=f"{slug}.txt")
    assert document_ingest(document_id=document.pk) == "ready"
    return collection


@pytest.fixture
def manuals(membership: Membership) -> Collection:
    return collection_with(membership.tenant, "manuals", "The error code XK-4471 means the flux capacitor overheated.")


def test_knowledge_search_finds_chunks_of_the_callers_collections(membership: Membership, manuals: Collection) -> None:
    result = search_as(membership, query="XK-4471", mode="keyword")

    assert not result.is_error
    hits = result.structured_content["hits"]
    assert [hit["collection"] for hit in hits] == ["manuals"]
    assert "flux capacitor" in hits[0]["text"]
    assert "manuals manual" in text(result)


def test_knowledge_search_never_reaches_another_tenants_collections(
    membership: Membership, manuals: Collection
) -> None:
    collection_with(TenantFactory.create(slug="rivals"), "secrets", "The error code XK-4471 is a rival secret.")

    everywhere = search_as(membership, query="XK-4471", mode="keyword", top_k=10)
    named = search_as(membership, query="XK-4471", mode="keyword", collections=["secrets"])

    assert {hit["collection"] for hit in everywhere.structured_content["hits"]} == {"manuals"}
    assert named.is_error
    assert "No collection 'secrets'" in text(named)


def test_knowledge_search_takes_the_hybrid_weight_and_depth(membership: Membership, manuals: Collection) -> None:
    result = search_as(membership, query="flux capacitor", alpha=0.2, candidates=10, top_k=1)
    assert not result.is_error, text(result)
    (hit,) = result.structured_content["hits"]
    assert hit["collection"] == "manuals" and hit["keyword_rank"] == 1


def test_a_member_without_collections_finds_nothing(manuals: Collection) -> None:
    loner = MembershipFactory.create(tenant=TenantFactory.create())
    result = search_as(loner, query="XK-4471", mode="keyword")
    assert not result.is_error
    assert result.structured_content == {"hits": []}


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"query": ""}, "'query'"),
        ({"query": "x", "top_k": 0}, "'top_k'"),
        ({"query": "x", "mode": "psychic"}, "'mode'"),
        ({"query": "x", "collections": "manuals"}, "'collections'"),
        ({"query": "x", "filters": {}}, "Unknown arguments: filters"),
        ({"query": "x", "alpha": "half"}, "'alpha'"),
        ({"query": "x", "alpha": 2}, "'alpha'"),
        ({"query": "x", "candidates": 2.5}, "'candidates'"),
        ({"query": "x", "top_k": 5, "candidates": 4}, "'candidates' must be an integer from top_k to 1000"),
    ],
)
def test_bad_arguments_are_tool_errors(membership: Membership, arguments: dict[str, Any], complaint: str) -> None:
    result = search_as(membership, **arguments)
    assert result.is_error
    assert complaint in text(result)
