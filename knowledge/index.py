"""The search index of chunks, in the form each database offers.

PostgreSQL: pgvector cosine distance, through an HNSW expression index per dimension (``knowledge.operations``)
with iterative scans so filters do not starve the top-k; full text through the generated ``search_vector``
column and its GIN index, ranked with BM25 computed in SQL (see ``_POSTGRES_BM25``).

SQLite (embedded): exact cosine search in-process with NumPy over a per-collection matrix cached in memory and
reloaded when the collection's ``index_version`` moves; full text through FTS5 (BM25), kept in step with the
chunks by triggers (``knowledge.operations``), so a chunk deleted by any path, a tenant's cascade included,
leaves the full-text index in the same statement.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from knowledge.models import Chunk, Collection, Document
from knowledge.operations import HNSW_DIMENSIONS

_TERM = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64


def _postgres() -> bool:
    return bool(connection.vendor == "postgresql")


# --- Queries -------------------------------------------------------------------------------------------------


def query_terms(query: str) -> list[str]:
    """The words of a keyword query, lower-cased, first occurrence first, at most MAX_QUERY_TERMS."""
    seen: dict[str, None] = {}
    for term in _TERM.findall(query.lower()):
        seen.setdefault(term, None)
    return list(seen)[:MAX_QUERY_TERMS]


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
    values = [c.pk if _postgres() else c.pk.hex for c in collections]
    return marks, values


# BM25 on PostgreSQL, with the usual parameters (those of SQLite FTS5's bm25() and Lucene), so both databases rank
# keyword hits alike. ts_rank_cd, used before, has no inverse document frequency: in an OR query a common word
# counts as much as a rare one, and on BEIR SciFact it scored nDCG@10 0.32 where BM25 scores 0.67-0.69.
# Term frequencies are the lexeme's positions in the chunk's search_vector; document frequencies are counted over
# the matching chunks (every chunk holding a query lexeme matches the OR query), within the collections and the
# document filter; lengths are token counts, so only their ratio to the average matters.
BM25_K1 = 1.2
BM25_B = 0.75
_POSTGRES_BM25 = (
    # Only placeholders and Django-compiled SQL are interpolated into it (format: marks, doc_sql).
    "WITH matched AS ("
    " SELECT c.id, c.token_count AS dl, c.search_vector AS v"
    " FROM knowledge_chunk c WHERE c.search_vector @@ to_tsquery('english', %s)"
    " AND c.collection_id IN ({marks}){doc_sql}),"
    " wanted AS (SELECT tsvector_to_array(to_tsvector('english', %s)) AS lexemes),"
    " occurrences AS ("
    # Only the query's lexemes are unnested: marked with weight A (the rest D) and filtered in C, which halves
    # the query time on SciFact against unnesting every lexeme of every matching chunk and filtering the rows.
    " SELECT m.id, m.dl, u.lexeme, coalesce(array_length(u.positions, 1), 1)::float8 AS tf"
    " FROM matched m CROSS JOIN wanted w"
    " CROSS JOIN LATERAL unnest(ts_filter(setweight(setweight(m.v, 'D'), 'A', w.lexemes), '{{a}}')) u),"
    " frequencies AS (SELECT lexeme, count(*)::float8 AS df FROM occurrences GROUP BY lexeme),"
    " corpus AS ("
    " SELECT count(*)::float8 AS n, greatest(coalesce(avg(c.token_count), 1), 1)::float8 AS avgdl"
    " FROM knowledge_chunk c WHERE c.collection_id IN ({marks}){doc_sql})"
    " SELECT o.id, sum("
    " ln(1 + (corpus.n - f.df + 0.5) / (f.df + 0.5))"
    " * o.tf * (%s + 1) / (o.tf + %s * (1 - %s + %s * o.dl / corpus.avgdl))"
    " ) AS score"
    " FROM occurrences o JOIN frequencies f USING (lexeme) CROSS JOIN corpus"
    " GROUP BY o.id ORDER BY score DESC, o.id LIMIT %s"
)


def keyword_search(
    *, collections: Sequence[Collection], query: str, limit: int, documents: QuerySet[Document] | None = None
) -> list[Scored]:
    """Chunks matching any of the query's words, best first, ranked by BM25 (FTS5 on SQLite, SQL on PostgreSQL)."""
    terms = query_terms(query)
    if not terms or not collections:
        return []
    marks, collection_ids = _collection_params(collections)
    doc_sql, doc_params = _document_subquery(documents)
    if _postgres():
        tsquery = " | ".join(f"'{term}'" for term in terms)
        # Only placeholders and Django-compiled SQL are interpolated; the terms are \w+ words, passed as a parameter.
        sql = _POSTGRES_BM25.format(marks=marks, doc_sql=doc_sql)
        params: list[Any] = [
            tsquery,
            *collection_ids,
            *doc_params,
            " ".join(terms),
            *collection_ids,
            *doc_params,
            BM25_K1,
            BM25_K1,
            BM25_B,
            BM25_B,
            limit,
        ]
    else:
        match = " OR ".join(f'"{term}"' for term in terms)
        sql = (
            "SELECT c.id, -bm25(knowledge_chunk_fts) AS score FROM knowledge_chunk_fts "  # noqa: S608
            "JOIN knowledge_chunk c ON c.id = knowledge_chunk_fts.rowid "
            f"WHERE knowledge_chunk_fts MATCH %s AND c.collection_id IN ({marks}){doc_sql} "
            "ORDER BY score DESC, c.id LIMIT %s"
        )
        params = [match, *collection_ids, *doc_params, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [Scored(int(row[0]), float(row[1])) for row in cursor.fetchall()]


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
    if _postgres():
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
