"""Retrieval for agents: the ``knowledge_search`` tool, and how hits become sources and citations.

Both the ``rag`` class and any tool-using agent given ``knowledge_search`` search the tenant's collections
through ``knowledge.search``, emit ``retrieval.completed`` with the hits, and end their answer with one
``citation`` content block per hit used (document, chunk id, quoted text, score).
"""

from __future__ import annotations

import json
from typing import Any

from agents.tools import ToolContext, ToolError, tool
from aihub import tracing
from knowledge.models import Collection
from knowledge.search import SearchError, search

QUOTE_CHARS = 500
"""How much of a chunk a citation quotes."""


def tenant_collections(tenant_id: Any, slugs: list[str] | None) -> list[Collection]:
    """The tenant's collections by slug (all of them when ``slugs`` is empty); unknown slugs are an error."""
    collections = Collection.objects.filter(tenant_id=tenant_id).order_by("slug")
    if not slugs:
        return list(collections)
    found = list(collections.filter(slug__in=slugs))
    missing = sorted(set(slugs) - {c.slug for c in found})
    if missing:
        raise SearchError(f"No collection {', '.join(missing)!s} in this tenant.", field="collections")
    return found


def retrieve(
    *,
    tenant_id: Any,
    query: str,
    collections: list[str] | None = None,
    top_k: int = 5,
    mode: str = "hybrid",
    filters: dict[str, Any] | None = None,
    alpha: float | None = None,
    candidates: int | None = None,
) -> list[dict[str, Any]]:
    """Hits as dictionaries (``knowledge.search.Hit.as_dict``). Raises SearchError.

    ``alpha`` and ``candidates`` tune hybrid search (None: the service's defaults).

    A ``retrieval`` span (GenAI semantic conventions) when tracing is on.
    """
    tuning = {"alpha": alpha, "candidates": candidates}
    if tracing.tracer is None:
        return _retrieve(tenant_id, query, collections, top_k, mode, filters, tuning)
    source = ",".join(collections or ()) or "*"
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "retrieval",
        "gen_ai.data_source.id": source,
        "gen_ai.retrieval.top_k": top_k,
        "aihub.retrieval.mode": mode,
    }
    if tracing.trace_content:
        attributes["gen_ai.retrieval.query.text"] = query
    with tracing.span(f"retrieval {source}", attributes) as span:
        hits = _retrieve(tenant_id, query, collections, top_k, mode, filters, tuning)
        span.set_attribute("aihub.retrieval.hits", len(hits))
        return hits


def _retrieve(
    tenant_id: Any,
    query: str,
    collections: list[str] | None,
    top_k: int,
    mode: str,
    filters: dict[str, Any] | None,
    tuning: dict[str, Any],
) -> list[dict[str, Any]]:
    found = tenant_collections(tenant_id, collections)
    if not found:
        return []
    hits = search(collections=found, query=query, mode=mode, top_k=top_k, filters=filters or None, **tuning)
    return [hit.as_dict() for hit in hits]


def retrieval_event(query: str, hits: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The data of a ``retrieval.completed`` event."""
    return {"query": query, "hits": hits, **extra}


def citation_blocks(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``citation`` content block per hit, in the order the sources were numbered."""
    return [
        {
            "type": "citation",
            "document_id": hit["document"]["id"],
            "chunk_id": str(hit["chunk_id"]),
            "title": hit["document"]["title"],
            "text": hit["text"][:QUOTE_CHARS],
            "score": hit["score"],
        }
        for hit in hits
    ]


def sources_prompt(question: str, hits: list[dict[str, Any]]) -> str:
    """The user turn the model answers: numbered sources, then the question (see the offline provider)."""
    lines = [f"[{n}] {hit['document']['title']}: {' '.join(hit['text'].split())}" for n, hit in enumerate(hits, 1)]
    return "<sources>\n" + "\n".join(lines) + "\n</sources>\n\nQuestion: " + question


@tool()
def knowledge_search(
    context: ToolContext, query: str, collections: list[str] | None = None, top_k: int = 5
) -> dict[str, Any]:
    """Search the knowledge collections for passages about the query (hybrid keyword and meaning search).
    Returns numbered hits with their text; cite them as [n]. `collections` are slugs; all when left out."""
    if not 1 <= top_k <= 20:
        raise ToolError("top_k must be between 1 and 20.")
    try:
        hits = retrieve(tenant_id=context.tenant_id, query=query, collections=collections, top_k=top_k)
    except SearchError as exc:
        raise ToolError(str(exc)) from exc
    # "type": "retrieval" tells the tools agent to emit retrieval.completed and cite these hits.
    return {"type": "retrieval", "query": query, "hits": hits}


def retrieval_output(output: Any, is_error: bool) -> dict[str, Any] | None:
    """The query and hits of a ``knowledge_search`` result (for its ``retrieval.completed`` event), else None."""
    if is_error or not isinstance(output, dict) or output.get("type") != "retrieval":
        return None
    return retrieval_event(str(output.get("query", "")), list(output.get("hits", [])))


def retrieved_citations(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Citation blocks for every hit ``knowledge_search`` returned in this conversation (tool messages)."""
    hits: dict[tuple[str, int], dict[str, Any]] = {}
    for message in messages:
        if message.get("role") != "tool" or '"retrieval"' not in str(message.get("content", "")):
            continue
        try:
            output = json.loads(message["content"])
        except (TypeError, ValueError):
            continue
        if (found := retrieval_output(output, False)) is not None:
            for hit in found["hits"]:
                hits.setdefault((hit["document"]["id"], hit["chunk_id"]), hit)
    return citation_blocks(list(hits.values()))
