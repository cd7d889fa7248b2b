"""The search index of chunks, in the form each database offers.

Vectors on PostgreSQL: pgvector cosine distance, through an HNSW expression index per dimension
(``knowledge.operations``) with iterative scans so filters do not starve the top-k. On SQLite (embedded): exact
cosine search in-process with NumPy over a per-collection matrix cached in memory and reloaded when the
collection's ``index_version`` moves.

Keywords, on both: BM25 over the inverted index of ``knowledge.keywords``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from knowledge import keywords
from knowledge.db import collection_key, on_postgres
from knowledge.models import Chunk, Collection, Document
from knowledge.operations import HNSW_DIMENSIONS

# --- Queries -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    chunk_id: int
    score: float


def _document_subquery(documents: QuerySet[Document] | None) -> tuple[str, tuple[Any, ...]]:
    if documents is None:
        return "", ()
    sql, params = documents.values("id").query.sql_with_params()
    return f" AND c.document_id IN ({sql})", tuple(params)


def _collection_params(collections: Sequence[Collection]) -> tuple[str, list[Any]]:
    marks = ",".join(["%s"] * len(collections))
    values = [collection_key(c.pk) for c in collections]
    return marks, values


def keyword_search(
    *, collections: Sequence[Collection], query: str, limit: int, documents: QuerySet[Document] | None = None
) -> list[Scored]:
    """Chunks holding any of the query's terms, best first, ranked by BM25 (``knowledge.keywords``)."""
    found = keywords.search(collections=collections, query=query, limit=limit, documents=documents)
    return [Scored(chunk_id, score) for chunk_id, score in found]


def vector_search(
    *,
    collections: Sequence[Collection],
    vector: np.ndarray[Any, Any],
    limit: int,
    documents: QuerySet[Document] | None = None,
    exact: bool = False,
) -> list[Scored]:
    """The chunks nearest to ``vector`` by cosine similarity (all collections share its embedder), best first.

    ``exact`` forces a full scan on PostgreSQL (the HNSW index is approximate); SQLite is always exact.
    """
    if not collections:
        return []
    if on_postgres():
        return _pgvector_search(collections, vector, limit, documents, exact)
    allowed = None if documents is None else set(documents.values_list("id", flat=True))
    found: list[Scored] = []
    for collection in collections:
        found.extend(_matrix_for(collection, int(vector.shape[0])).search(vector, limit, allowed))
    found.sort(key=lambda s: (-s.score, s.chunk_id))
    return found[:limit]


def _pgvector_search(
    collections: Sequence[Collection],
    vector: np.ndarray[Any, Any],
    limit: int,
    documents: QuerySet[Document] | None,
    exact: bool,
) -> list[Scored]:
    dimensions = int(vector.shape[0])
    literal = "[" + ",".join(repr(float(x)) for x in vector) + "]"
    marks, collection_ids = _collection_params(collections)
    doc_sql, doc_params = _document_subquery(documents)
    # The expression must match the index's to use it; the uncast column scans exactly.
    column = "c.embedding" if exact or dimensions not in HNSW_DIMENSIONS else f"c.embedding::vector({dimensions})"
    cast = "vector" if column == "c.embedding" else f"vector({dimensions})"
    sql = (
        f"SELECT c.id, 1 - ({column} <=> %s::{cast}) AS score FROM knowledge_chunk c "  # noqa: S608
        f"WHERE c.dimensions = %s AND c.collection_id IN ({marks}){doc_sql} "
        f"ORDER BY {column} <=> %s::{cast} LIMIT %s"
    )
    params = [literal, dimensions, *collection_ids, *doc_params, literal, limit]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true)", [str(max(settings.KNOWLEDGE_HNSW_EF_SEARCH, limit))]
        )
        # Filtered searches keep scanning the graph until enough rows pass the filter (pgvector 0.8).
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = [Scored(int(row[0]), float(row[1])) for row in rows]
    # relaxed_order may return rows slightly out of order.
    found.sort(key=lambda s: (-s.score, s.chunk_id))
    return found


# --- The in-process matrix (SQLite) ------------------------------------------------------------------------------


class _Matrix:
    def __init__(self, version: int, chunk_ids: np.ndarray[Any, Any], doc_ids: list[uuid.UUID], vectors: Any) -> None:
        self.version = version
        self.chunk_ids = chunk_ids
        self.doc_ids = doc_ids
        self.vectors = vectors

    def search(self, vector: np.ndarray[Any, Any], limit: int, allowed: set[Any] | None) -> list[Scored]:
        if not len(self.chunk_ids):
            return []
        scores = self.vectors @ vector.astype(np.float32)
        if allowed is not None:
            mask = np.fromiter((doc in allowed for doc in self.doc_ids), dtype=bool, count=len(self.doc_ids))
            scores = np.where(mask, scores, -np.inf)
        k = min(limit, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Scored(int(self.chunk_ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]


_matrices: dict[tuple[uuid.UUID, int], _Matrix] = {}
_matrices_lock = threading.Lock()


def _matrix_for(collection: Collection, dimensions: int) -> _Matrix:
    """The collection's vectors of that dimension (during a re-embed, chunks of the old embedder are skipped)."""
    key = (collection.pk, dimensions)
    version = Collection.objects.filter(pk=collection.pk).values_list("index_version", flat=True).first() or 0
    with _matrices_lock:
        cached = _matrices.get(key)
        if cached is not None and cached.version == version:
            return cached
    rows = list(
        Chunk.objects.filter(collection=collection, dimensions=dimensions)
        .order_by("id")
        .values_list("id", "document_id", "embedding")
    )
    if rows:
        vectors = np.vstack([row[2] for row in rows]).astype(np.float32)
    else:
        vectors = np.zeros((0, dimensions), dtype=np.float32)
    matrix = _Matrix(version, np.array([row[0] for row in rows], dtype=np.int64), [row[1] for row in rows], vectors)
    with _matrices_lock:
        _matrices[key] = matrix
    return matrix


def forget_matrices() -> None:
    with _matrices_lock:
        _matrices.clear()
