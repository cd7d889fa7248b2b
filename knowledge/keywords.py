# Statements here interpolate only placeholders, fixed fragments and Django-compiled SQL; values are parameters.
# ruff: noqa: S608
"""The keyword index: BM25 over an inverted index kept in the database beside the chunks, on both databases.

Why tables, not FTS5 or a tsvector: both rank by scoring every chunk that holds any query word, which at
100,000 chunks took 234 ms p50 on PostgreSQL for SciFact's long queries. Here the statistics BM25 needs are
kept as the chunks change (``Term.chunk_count`` is the document frequency, ``Collection.keyword_chunks`` and
``keyword_terms`` give N and the average length), so a search reads only the postings of its words, and
MaxScore (Turtle and Flood, 1995) skips most of the common words' postings while still returning the exact
BM25 top-k: a word whose best possible contribution cannot lift a chunk past the k-th score found is only
looked up for the chunks already in the running. The index is rows in the same transaction as the chunks, so
a re-ingested document is searchable by its new words and never by its old ones, tenant and collection
scoped by the term rows' collection, and rebuilt from the chunks' text by ``manage.py rebuild_keyword_index``.

Analysis: lower-cased Unicode words (``\\w+``), the English stop words of PostgreSQL and Snowball removed, and
Snowball's English stemmer (PyStemmer, the C implementation), the same on both databases, so they rank alike.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import Stemmer
from django.db import connection
from django.db.models import Count, F, QuerySet, Sum

from knowledge.db import collection_key, on_postgres
from knowledge.models import Chunk, Collection, Document

BM25_K1 = 1.2
BM25_B = 0.75
MAX_TERM_CHARS = 64
MAX_QUERY_TERMS = 64
# The rare words read first, to learn a lower bound of the k-th score: at least this many postings.
FIRST_POSTINGS = 2000
# How many of their best chunks are completed with the other words for that bound.
FIRST_CANDIDATES = 100
# Up to this many postings in all, one plain scoring statement is as fast.
FLAT_POSTINGS = 5000
_WRITE_BATCH = 1000

_WORD = re.compile(r"\w+", re.UNICODE)
# PostgreSQL's english.stop (Snowball's English list).
_STOP_LIST = (
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom this that these those am is are "
    "was were be been being have has had having do does did doing a an the and but if or because as until while "
    "of at by for with about against between into through during before after above below to from up down in out "
    "on off over under again further then once here there when where why how all any both each few more most "
    "other some such no nor not only own same so than too very s t can will just don should now"
)
STOP_WORDS = frozenset(_STOP_LIST.split())
_stemmers = threading.local()  # a PyStemmer object is not safe to share between threads


def analyze(text: str) -> list[str]:
    """The index terms of ``text``, in order, repeats kept."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) <= MAX_TERM_CHARS]
    return list(stemmer.stemWords(words))


def query_terms(query: str) -> list[str]:
    """The distinct terms of a keyword query, first occurrence first, at most MAX_QUERY_TERMS."""
    return list(dict.fromkeys(analyze(query)))[:MAX_QUERY_TERMS]


def _marks(count: int, width: int = 1) -> str:
    row = "(" + ",".join(["%s"] * width) + ")" if width > 1 else "%s"
    return ",".join([row] * count)


# --- Writes (inside the caller's transaction) ----------------------------------------------------------------


def chunks_store(*, collection_id: Any, chunks: list[Chunk], batch_size: int = 500) -> list[Chunk]:
    """Insert new chunks of the collection and add them to its keyword index (in the caller's transaction), each
    row written once: its ``term_count`` is known before the insert. Returns the stored chunks."""
    analyzed = [Counter(analyze(chunk.text)) for chunk in chunks]
    for chunk, counts in zip(chunks, analyzed, strict=True):
        chunk.term_count = sum(counts.values())
    created = Chunk.objects.bulk_create(chunks, batch_size=batch_size)
    _index(collection_id, [(chunk.pk, counts) for chunk, counts in zip(created, analyzed, strict=True)])
    return created


def _stored_chunks_index(collection_id: Any, chunks: Sequence[tuple[int, str]]) -> None:
    """Add chunks (id, text), already stored, to the collection's keyword index, their ``term_count`` set again
    (in the caller's transaction)."""
    analyzed = [(chunk_id, Counter(analyze(text))) for chunk_id, text in chunks]
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE knowledge_chunk SET term_count = %s WHERE id = %s",
            [(sum(counts.values()), chunk_id) for chunk_id, counts in analyzed],
        )
    _index(collection_id, analyzed)


def _index(collection_id: Any, analyzed: list[tuple[int, Counter[str]]]) -> None:
    """The postings and term statistics of stored chunks (id, their terms counted).

    It updates the collection's row first, which locks it until commit: every index write of a collection then
    runs one at a time, so term rows are never updated in two orders at once (no deadlocks) and the statistics
    stay exact.
    """
    lengths = {chunk_id: sum(counts.values()) for chunk_id, counts in analyzed}
    collection = Collection.objects.filter(pk=collection_id)
    collection.update(
        keyword_chunks=F("keyword_chunks") + len(analyzed), keyword_terms=F("keyword_terms") + sum(lengths.values())
    )
    chunk_total, term_total = collection.values_list("keyword_chunks", "keyword_terms").get()
    length_factor = _length_factor(chunk_total, term_total)
    stats: dict[str, list[float]] = {}  # term: [chunks holding it, the highest frequency part]
    for chunk_id, counts in analyzed:
        for term, frequency in counts.items():
            impact = _impact(frequency, lengths[chunk_id], length_factor)
            entry = stats.get(term)
            if entry is None:
                stats[term] = [1, impact]
            else:
                entry[0] += 1
                entry[1] = max(entry[1], impact)
    term_ids = _terms_upsert(collection_id, stats, length_factor)
    postings = [
        (term_ids[term], chunk_id, min(frequency, 32767), lengths[chunk_id])
        for chunk_id, counts in analyzed
        for term, frequency in counts.items()
    ]
    _postings_insert(postings)


def _length_factor(chunk_total: float, term_total: float) -> float:
    """k1 b / the average chunk length, the coefficient of a chunk's length in BM25's denominator."""
    return BM25_K1 * BM25_B / max(float(term_total) / max(float(chunk_total), 1.0), 1.0)


def _impact(frequency: float, length: float, length_factor: float) -> float:
    return frequency / (frequency + BM25_K1 * (1 - BM25_B) + length_factor * length)


def _postings_insert(rows: list[tuple[int, int, int, int]]) -> None:
    with connection.cursor() as cursor:
        if on_postgres():
            # COPY: several times faster than INSERT for the thousands of rows a batch of chunks makes.
            with cursor.cursor.copy("COPY knowledge_posting (term_id, chunk_id, frequency, length) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                "INSERT INTO knowledge_posting (term_id, chunk_id, frequency, length) VALUES (%s, %s, %s, %s)", rows
            )


def _terms_upsert(collection_id: Any, stats: dict[str, list[float]], length_factor: float) -> dict[str, int]:
    """Insert or update the terms (sorted, so two writers would lock them in one order), returning their ids.

    A term's stored bound was computed with an older length factor L0; with the current L it is still a bound
    once multiplied by max(1, L0 / L) (the frequency part grows by at most L0 / L when L shrinks), so the new
    bound is the larger of that and this batch's.
    """
    greatest = "GREATEST" if on_postgres() else "MAX"
    key = collection_key(collection_id)
    ids: dict[str, int] = {}
    terms = sorted(stats)
    with connection.cursor() as cursor:
        for start in range(0, len(terms), _WRITE_BATCH):
            batch = terms[start : start + _WRITE_BATCH]
            cursor.execute(
                "INSERT INTO knowledge_term (collection_id, text, chunk_count, max_impact, impact_length_factor) "
                f"VALUES {_marks(len(batch), 5)} "
                "ON CONFLICT (collection_id, text) DO UPDATE SET "
                "chunk_count = knowledge_term.chunk_count + excluded.chunk_count, "
                f"max_impact = {greatest}(excluded.max_impact, knowledge_term.max_impact "
                f"* {greatest}(1.0, knowledge_term.impact_length_factor / excluded.impact_length_factor)), "
                "impact_length_factor = excluded.impact_length_factor "
                "RETURNING id, text",
                [value for term in batch for value in (key, term, int(stats[term][0]), stats[term][1], length_factor)],
            )
            ids.update((text, term_id) for term_id, text in cursor.fetchall())
    return ids


def chunks_unindex(*, collection_id: Any, chunks: QuerySet[Chunk]) -> None:
    """Take chunks out of the keyword index before they are deleted (in the same transaction).

    Term bounds are left as they were: still bounds, only looser, until the index is rebuilt.
    """
    chunk_sql, chunk_params = chunks.values("id").query.sql_with_params()
    removed = chunks.aggregate(n=Count("id"), terms=Sum("term_count"))
    if not removed["n"]:
        return
    Collection.objects.filter(pk=collection_id).update(
        keyword_chunks=F("keyword_chunks") - removed["n"], keyword_terms=F("keyword_terms") - (removed["terms"] or 0)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT term_id, count(*) FROM knowledge_posting WHERE chunk_id IN ({chunk_sql}) "
            "GROUP BY term_id ORDER BY term_id",
            chunk_params,
        )
        counts = cursor.fetchall()
        cursor.execute(f"DELETE FROM knowledge_posting WHERE chunk_id IN ({chunk_sql})", chunk_params)
        cursor.executemany(
            "UPDATE knowledge_term SET chunk_count = chunk_count - %s WHERE id = %s", [(n, t) for t, n in counts]
        )
        gone = [term_id for term_id, _ in counts]
        for start in range(0, len(gone), _WRITE_BATCH):
            batch = gone[start : start + _WRITE_BATCH]
            cursor.execute(
                f"DELETE FROM knowledge_term WHERE chunk_count <= 0 AND id IN ({_marks(len(batch))})",
                batch,
            )


def collection_reindex(
    *, collection: Collection, batch_size: int = 2000, progress: Callable[[int], None] | None = None
) -> int:
    """Rebuild the collection's keyword index from its chunks' text (in the caller's transaction); returns the
    number of chunks indexed. ``progress(done)`` is called after each batch."""
    Collection.objects.filter(pk=collection.pk).update(keyword_chunks=0, keyword_terms=0)
    with connection.cursor() as cursor:
        key = collection_key(collection.pk)
        cursor.execute(
            "DELETE FROM knowledge_posting WHERE term_id IN (SELECT id FROM knowledge_term WHERE collection_id = %s)",
            [key],
        )
        cursor.execute("DELETE FROM knowledge_term WHERE collection_id = %s", [key])
    done, last = 0, 0
    chunks = Chunk.objects.filter(collection=collection).order_by("id")
    while True:
        batch = list(chunks.filter(id__gt=last).values_list("id", "text")[:batch_size])
        if not batch:
            return done
        _stored_chunks_index(collection.pk, batch)
        done += len(batch)
        last = batch[-1][0]
        if progress is not None:
            progress(done)


# --- Search --------------------------------------------------------------------------------------------------


@dataclass
class _Word:
    text: str
    term_ids: list[int]
    weight: float  # idf * (k1 + 1)
    bound: float  # the most it can add to one chunk's score
    postings: int


def search(
    *, collections: Sequence[Collection], query: str, limit: int, documents: QuerySet[Document] | None = None
) -> list[tuple[int, float]]:
    """The ``limit`` chunks with the highest BM25 score for any of the query's terms, best first (ties by id)."""
    terms = query_terms(query)
    if not terms or not collections or limit < 1:
        return []
    words, length_factor = _words(collections, terms)
    if not words:
        return []
    scorer = _Scorer(length_factor, documents)
    if sum(w.postings for w in words) <= FLAT_POSTINGS:
        return _ranked(scorer.top(words, limit), limit)
    # MaxScore. First a lower bound of the k-th score: read the postings of the words most able to score (the
    # rarest) until FIRST_POSTINGS, take their best chunks and complete those with the other words.
    by_bound = sorted(words, key=lambda w: (-w.bound, w.text))
    first: list[_Word] = []
    for word in by_bound:
        first.append(word)
        if sum(w.postings for w in first) >= FIRST_POSTINGS:
            break
    rest = [w for w in words if w not in first]
    if not rest:
        return _ranked(scorer.top(first, limit), limit)
    scores = dict(scorer.top(first, FIRST_CANDIDATES))
    for chunk_id, score in scorer.complete(rest, list(scores)):
        scores[chunk_id] += score
    ranked = _ranked(scores.items(), limit)
    kth = ranked[-1][1] if len(ranked) >= limit else 0.0
    # Words whose bounds together stay below that k-th score cannot lift a chunk holding none of the others to
    # it; a chunk holding some of the others can reach it only if its score over those, plus the skipped words'
    # bounds, does. So: score every chunk over the others, keep those that can still reach it, add the skipped
    # words' scores for just those chunks (one statement), and the top-k among them is BM25's exact top-k.
    skipped, total = [], 0.0
    for word in sorted(words, key=lambda w: (w.bound, w.text)):
        if total + word.bound >= kth:
            break
        skipped.append(word)
        total += word.bound
    read = [w for w in words if w not in skipped]
    if not skipped:
        return _ranked(scorer.top(read, limit), limit)
    return _ranked(scorer.top_completed(read, skipped, at_least=kth - total, limit=limit), limit)


def _ranked(scores: Iterable[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    ordered = sorted(scores, key=lambda item: (-item[1], item[0]))[:limit]
    return [(chunk_id, score) for chunk_id, score in ordered if score > 0]


def _words(collections: Sequence[Collection], terms: list[str]) -> tuple[list[_Word], float]:
    keys = [collection_key(c.pk) for c in collections]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(keyword_chunks), 0), coalesce(sum(keyword_terms), 0) "
            f"FROM knowledge_collection WHERE id IN ({_marks(len(keys))})",
            keys,
        )
        chunk_total, term_total = cursor.fetchone()
        cursor.execute(
            "SELECT id, text, chunk_count, max_impact, impact_length_factor FROM knowledge_term "
            f"WHERE collection_id IN ({_marks(len(keys))}) AND text IN ({_marks(len(terms))}) AND chunk_count > 0",
            [*keys, *terms],
        )
        rows = cursor.fetchall()
    n = float(max(chunk_total, 1))
    length_factor = _length_factor(chunk_total, term_total)
    grouped: dict[str, list[Any]] = {}
    for term_id, text, chunk_count, max_impact, impact_length_factor in rows:
        entry = grouped.setdefault(text, [[], 0, 0.0])
        entry[0].append(term_id)
        entry[1] += chunk_count
        entry[2] = max(entry[2], max_impact * max(1.0, impact_length_factor / length_factor))
    words = []
    for text, (term_ids, df, impact) in grouped.items():
        weight = math.log(1 + (n - df + 0.5) / (df + 0.5)) * (BM25_K1 + 1)
        words.append(_Word(text, term_ids, weight, weight * impact, df))
    return words, length_factor


class _Scorer:
    """BM25 sums over postings in SQL: w * tf / (tf + k1 (1 - b) + k1 b dl / avgdl) per query term."""

    def __init__(self, length_factor: float, documents: QuerySet[Document] | None) -> None:
        self.constant = BM25_K1 * (1 - BM25_B)
        self.length_factor = length_factor
        self.documents = documents

    @staticmethod
    def _weights(name: str, words: Sequence[_Word]) -> tuple[str, list[Any]]:
        pairs = [(term_id, word.weight) for word in words for term_id in word.term_ids]
        # Typed, or PostgreSQL computes in numeric (Django binds floats as literals): several times slower.
        values = ",".join(["(%s, CAST(%s AS DOUBLE PRECISION))"] * len(pairs))
        return f"{name}(term_id, weight) AS (VALUES {values})", [value for pair in pairs for value in pair]

    def _sum(self, weights: str) -> tuple[str, list[Any]]:
        return (
            f"sum({weights}.weight * p.frequency / (p.frequency + CAST(%s AS DOUBLE PRECISION) "
            "+ CAST(%s AS DOUBLE PRECISION) * p.length))",
            [self.constant, self.length_factor],
        )

    def _scored(self, at_least: float | None) -> tuple[str, list[Any]]:
        """The statement giving (chunk_id, score) over the words of the CTE ``w``."""
        total, params = self._sum("w")
        sql = f"SELECT p.chunk_id, {total} AS score FROM knowledge_posting p JOIN w ON w.term_id = p.term_id"
        if self.documents is not None:
            document_sql, document_params = self.documents.values("id").query.sql_with_params()
            sql += f" WHERE p.chunk_id IN (SELECT id FROM knowledge_chunk WHERE document_id IN ({document_sql}))"
            params += document_params
        sql += " GROUP BY p.chunk_id"
        if at_least is not None:
            condition, condition_params = self._sum("w")
            sql += f" HAVING {condition} >= %s"
            params += [*condition_params, at_least]
        return sql, params

    @staticmethod
    def _run(sql: str, params: list[Any]) -> list[tuple[int, float]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [(int(chunk_id), float(score)) for chunk_id, score in cursor.fetchall()]

    def top(self, words: Sequence[_Word], limit: int) -> list[tuple[int, float]]:
        """The ``limit`` best chunks by their score over ``words`` alone."""
        weights, params = self._weights("w", words)
        scored, scored_params = self._scored(None)
        sql = f"WITH {weights} {scored} ORDER BY score DESC, p.chunk_id LIMIT %s"
        return self._run(sql, [*params, *scored_params, limit])

    def complete(self, words: Sequence[_Word], chunk_ids: list[int]) -> list[tuple[int, float]]:
        """What ``words`` add to each of ``chunk_ids``."""
        if not chunk_ids:
            return []
        weights, params = self._weights("w", words)
        total, total_params = self._sum("w")
        sql = (
            f"WITH {weights} SELECT p.chunk_id, {total} FROM knowledge_posting p JOIN w ON w.term_id = p.term_id "
            f"WHERE p.chunk_id IN ({_marks(len(chunk_ids))}) GROUP BY p.chunk_id"
        )
        return self._run(sql, [*params, *total_params, *chunk_ids])

    def top_completed(
        self, read: Sequence[_Word], skipped: Sequence[_Word], *, at_least: float, limit: int
    ) -> list[tuple[int, float]]:
        """The ``limit`` best chunks among those scoring ``at_least`` over ``read``, by their score over both."""
        read_weights, params = self._weights("w", read)
        skipped_weights, skipped_params = self._weights("s", skipped)
        scored, scored_params = self._scored(at_least)
        added, added_params = self._sum("s")
        sql = (
            f"WITH {read_weights}, {skipped_weights}, candidate AS ({scored}), "
            f"extra AS (SELECT p.chunk_id, {added} AS score FROM candidate c "
            "JOIN knowledge_posting p ON p.chunk_id = c.chunk_id JOIN s ON s.term_id = p.term_id GROUP BY p.chunk_id) "
            "SELECT c.chunk_id, c.score + coalesce(e.score, 0) AS total FROM candidate c "
            "LEFT JOIN extra e ON e.chunk_id = c.chunk_id ORDER BY total DESC, c.chunk_id LIMIT %s"
        )
        return self._run(sql, [*params, *skipped_params, *scored_params, *added_params, limit])
