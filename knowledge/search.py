"""Retrieval: vector, keyword and hybrid (reciprocal rank fusion) search over one or many collections.

Hits carry the document, the chunk id, its text, where it came from (page, heading path, offsets) and the
scores: ``score`` (what the hits are ordered by: cosine similarity, the keyword rank score, or the fused RRF
score), and, when known, ``vector_score`` and ``keyword_score`` with their ranks.

Hybrid search takes the ``candidates`` best chunks of each leg and fuses them by weighted reciprocal rank:
``alpha / (RRF_K + vector rank) + (1 - alpha) / (RRF_K + keyword rank)``, ``alpha`` the vector leg's weight
(1: the vector order, 0: the keyword order; Weaviate's convention). The two legs run at the same time (the query's
embedding and the vector scan in a second thread, on a second database connection) unless the caller is inside
a transaction, whose uncommitted rows another connection could not see.

Filters are on documents: ``{"field": value}`` (equality), ``{"field": {"in": [...]}}``, and ranges with
``gt``, ``gte``, ``lt``, ``lte``. Fields are the documents' metadata keys, plus ``document_id``,
``media_type`` and ``title``. A filter on a field no document in the collections has is an error, so a typo
does not silently return nothing.
"""

from __future__ import annotations

import contextvars
import threading
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db import connection, connections
from django.db.models import Q, QuerySet

from knowledge import index
from knowledge.embedders import get_embedder
from knowledge.models import Chunk, Collection, Document, chunk_location

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[str, ...] = ("vector", "keyword", "hybrid")
MAX_QUERY_CHARS = 4000
MAX_TOP_K = 100
RRF_K = 60
# Chosen on SciFact's train queries (bench/retrieval.py --split train --sweep); see the README's search section.
DEFAULT_ALPHA = 0.4
DEFAULT_CANDIDATES = 50
CANDIDATES_PER_HIT = 5
MAX_CANDIDATES = 1000
_OPERATORS = {"eq": "", "in": "__in", "gt": "__gt", "gte": "__gte", "lt": "__lt", "lte": "__lte"}
_HIT_COLUMNS = (
    "id",
    "document_id",
    "text",
    "page",
    "heading_path",
    "start",
    "end",
    "document__title",
    "document__metadata",
    "collection__slug",
)
_BUILT_IN_FIELDS = {"document_id": "id", "media_type": "media_type", "title": "title"}


class SearchError(ValueError):
    """The search request cannot be answered as asked; ``field`` names the part at fault."""

    def __init__(self, message: str, *, field: str = "query") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Hit:
    chunk_id: int
    document_id: Any
    document_title: str
    collection: str
    text: str
    location: dict[str, Any]
    metadata: dict[str, Any]
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "document": {"id": str(self.document_id), "title": self.document_title, "metadata": self.metadata},
            "collection": self.collection,
            "text": self.text,
            "location": self.location,
            "score": self.score,
            "vector_score": self.vector_score,
            "keyword_score": self.keyword_score,
            "vector_rank": self.vector_rank,
            "keyword_rank": self.keyword_rank,
        }


def filtered_documents(collections: list[Collection], filters: dict[str, Any] | None) -> QuerySet[Document] | None:
    """The documents the filters allow, or None for no filter at all."""
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise SearchError("Filters must be an object of field: condition.", field="filters")
    documents = Document.objects.filter(collection__in=collections)
    condition = Q()
    for name, wanted in filters.items():
        column = _BUILT_IN_FIELDS.get(name)
        if column is None:
            if not isinstance(name, str) or not name or len(name) > 64:
                raise SearchError(f"Invalid filter field {str(name)[:70]!r}.", field="filters")
            if not documents.filter(metadata__has_key=name).exists():
                raise SearchError(f"Unknown filter field {name!r}: no document has this metadata key.", field="filters")
            column = f"metadata__{name}"
        tests = wanted if isinstance(wanted, dict) else {"eq": wanted}
        if not tests:
            raise SearchError(f"The filter on {name!r} is empty.", field="filters")
        for operator, value in tests.items():
            suffix = _OPERATORS.get(operator)
            if suffix is None:
                raise SearchError(
                    f"Unknown operator {str(operator)[:30]!r} on {name!r}; use one of {', '.join(_OPERATORS)}.",
                    field="filters",
                )
            if operator == "in" and (not isinstance(value, list) or not value or len(value) > 1000):
                raise SearchError(f"'in' on {name!r} needs a list of 1 to 1000 values.", field="filters")
            if operator != "in" and isinstance(value, list | dict):
                raise SearchError(f"{operator!r} on {name!r} needs a single value.", field="filters")
            condition &= Q(**{column + suffix: value})
    return documents.filter(condition)


def fuse(
    vector: list[index.Scored], keyword: list[index.Scored], *, alpha: float, rrf_k: int = RRF_K
) -> list[tuple[int, float]]:
    """Both rankings fused by weighted reciprocal rank, best first (ties by chunk id)."""
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in ((vector, alpha), (keyword, 1.0 - alpha)):
        if weight <= 0:
            continue  # a leg of weight 0 adds nothing, not even a chunk only it found
        for rank, scored in enumerate(ranking, start=1):
            fused[scored.chunk_id] += weight / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def search(
    *,
    collections: list[Collection],
    query: str,
    mode: str = "hybrid",
    top_k: int = 5,
    filters: dict[str, Any] | None = None,
    exact: bool = False,
    alpha: float | None = None,
    candidates: int | None = None,
) -> list[Hit]:
    """The ``top_k`` best chunks for ``query`` in ``collections`` (the caller has checked it may search them).

    ``alpha`` and ``candidates`` tune hybrid search (the other modes ignore them): the vector leg's weight in
    [0, 1] (default ``DEFAULT_ALPHA``) and how many chunks each leg contributes, ``top_k`` to ``MAX_CANDIDATES``
    (default the larger of ``top_k * CANDIDATES_PER_HIT`` and ``DEFAULT_CANDIDATES``).
    """
    query = (query or "").strip()
    if not query:
        raise SearchError("The query is empty.")
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"The query is longer than {MAX_QUERY_CHARS} characters.")
    if mode not in MODES:
        raise SearchError(f"Unknown mode {mode!r}; use vector, keyword or hybrid.", field="mode")
    if not 1 <= top_k <= MAX_TOP_K:
        raise SearchError(f"top_k must be between 1 and {MAX_TOP_K}.", field="top_k")
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    if not 0.0 <= alpha <= 1.0:
        raise SearchError("alpha must be between 0 and 1.", field="alpha")
    if candidates is not None and not top_k <= candidates <= MAX_CANDIDATES:
        raise SearchError(f"candidates must be between top_k ({top_k}) and {MAX_CANDIDATES}.", field="candidates")
    documents = filtered_documents(collections, filters)

    if mode == "hybrid":
        depth = max(top_k * CANDIDATES_PER_HIT, DEFAULT_CANDIDATES) if candidates is None else candidates
        vector, keyword = search_legs(
            collections=collections, query=query, depth=depth, documents=documents, exact=exact
        )
        ordered = fuse(vector, keyword, alpha=alpha)
    elif mode == "vector":
        vector, keyword = _vector_leg(collections, query, top_k, documents, exact), []
        ordered = [(s.chunk_id, s.score) for s in vector]
    else:
        vector, keyword = (
            [],
            index.keyword_search(collections=collections, query=query, limit=top_k, documents=documents),
        )
        ordered = [(s.chunk_id, s.score) for s in keyword]
    vector_by_id = {s.chunk_id: (rank, s.score) for rank, s in enumerate(vector, start=1)}
    keyword_by_id = {s.chunk_id: (rank, s.score) for rank, s in enumerate(keyword, start=1)}
    return _hits(ordered[:top_k], vector_by_id, keyword_by_id)


def search_legs(
    *,
    collections: list[Collection],
    query: str,
    depth: int,
    documents: QuerySet[Document] | None = None,
    exact: bool = False,
) -> tuple[list[index.Scored], list[index.Scored]]:
    """Hybrid's two rankings, ``depth`` chunks each: (vector, keyword).

    Concurrently when allowed (``KNOWLEDGE_SEARCH_CONCURRENT_LEGS``, and not inside a transaction): the vector
    leg, the query's embedding included, runs in a pool thread on that thread's own connection, which it gives
    back (or closes) when done, while this thread runs the keyword query.
    """
    if not settings.KNOWLEDGE_SEARCH_CONCURRENT_LEGS or connection.in_atomic_block:
        vector = _vector_leg(collections, query, depth, documents, exact)
        keyword = index.keyword_search(collections=collections, query=query, limit=depth, documents=documents)
        return vector, keyword
    # The thread carries the caller's context (the tracing span, above all) along.
    context = contextvars.copy_context()
    pending: Future[list[index.Scored]] = _pool().submit(
        context.run, _vector_leg_on_own_connection, collections, query, depth, documents, exact
    )
    try:
        keyword = index.keyword_search(collections=collections, query=query, limit=depth, documents=documents)
    finally:
        vector = pending.result()  # waited for even on failure: the thread's connection is its own to close
    return vector, keyword


def _vector_leg(
    collections: list[Collection], query: str, depth: int, documents: QuerySet[Document] | None, exact: bool
) -> list[index.Scored]:
    by_embedder: dict[str, list[Collection]] = defaultdict(list)
    for collection in collections:
        by_embedder[collection.embedder].append(collection)
    vector: list[index.Scored] = []
    for embedder_name, group in by_embedder.items():
        query_vector = get_embedder(embedder_name).embed([query])[0]
        vector.extend(
            index.vector_search(collections=group, vector=query_vector, limit=depth, documents=documents, exact=exact)
        )
    vector.sort(key=lambda s: (-s.score, s.chunk_id))
    return vector[:depth]


def _vector_leg_on_own_connection(
    collections: list[Collection], query: str, depth: int, documents: QuerySet[Document] | None, exact: bool
) -> list[index.Scored]:
    try:
        return _vector_leg(collections, query, depth, documents, exact)
    finally:
        # A pooled connection goes back to the pool; an unpooled one is closed, so idle pool threads hold none.
        connections.close_all()


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.KNOWLEDGE_SEARCH_THREADS, thread_name_prefix="knowledge-search"
            )
        return _executor


def _hits(
    ordered: list[tuple[int, float]],
    vector_by_id: dict[int, tuple[int, float]],
    keyword_by_id: dict[int, tuple[int, float]],
) -> list[Hit]:
    # Only the columns a hit shows, as tuples: model instances (their signals and every column's converter)
    # cost more than the query itself here.
    rows = Chunk.objects.filter(pk__in=[chunk_id for chunk_id, _ in ordered]).values_list(*_HIT_COLUMNS)
    by_id = {row[0]: row for row in rows}
    hits = []
    for chunk_id, score in ordered:
        row = by_id.get(chunk_id)
        if row is None:  # deleted since it was ranked
            continue
        _, document_id, text, page, heading_path, start, end, title, metadata, collection_slug = row
        v_rank, v_score = vector_by_id.get(chunk_id, (None, None))
        k_rank, k_score = keyword_by_id.get(chunk_id, (None, None))
        hits.append(
            Hit(
                chunk_id=chunk_id,
                document_id=document_id,
                document_title=title,
                collection=collection_slug,
                text=text,
                location=chunk_location(page=page, heading_path=heading_path, start=start, end=end),
                metadata=metadata,
                score=round(score, 6),
                vector_score=None if v_score is None else round(v_score, 6),
                keyword_score=None if k_score is None else round(k_score, 6),
                vector_rank=v_rank,
                keyword_rank=k_rank,
            )
        )
    return hits
