# Statements here interpolate only placeholders, fixed fragments and Django-compiled SQL; values are parameters.
# ruff: noqa: S608
"""The keyword index: BM25 over an inverted index kept in the database beside the chunks, on both databases.

Why tables, not FTS5 or a tsvector: both rank by scoring every chunk that holds any query word in SQL, which at
100,000 chunks took 234 ms p50 on PostgreSQL for SciFact's queries. Here the statistics BM25 needs are kept as
the chunks change (``Term.chunk_count`` is the document frequency, ``Collection.keyword_chunks`` and
``keyword_terms`` give N and the average length), and a term's postings are packed into blocks of up to
``BLOCK_POSTINGS`` (chunk id, frequency, chunk length) records (``PostingBlock``), so a search reads a few rows
per query word and scores every posting with NumPy: the exact BM25 top-k, several times faster than summing
posting rows in SQL (profiled: the SQL aggregate, not the reading, was the cost). The blocks are rows in the
same transaction as the chunks, so a re-ingested document is searchable by its new words and never by its old
ones, tenant and collection scoped by the term rows' collection, and rebuilt from the chunks' text by
``manage.py rebuild_keyword_index``.

Analysis: lower-cased Unicode words (``\\w+``), the English stop words of PostgreSQL and Snowball removed, and
Snowball's English stemmer (PyStemmer, the C implementation), the same on both databases, so they rank alike.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import Stemmer
from django.db import connection
from django.db.models import F, QuerySet

from knowledge.db import collection_key, on_postgres
from knowledge.models import Chunk, Collection, Document

# Anserini's BM25 defaults for BEIR, chosen on SciFact's train queries over 1.2 / 0.75 and five other pairs
# (bench/retrieval.py --split train --sweep --bm25; see the README's search figures). Applied at query time:
# the index keeps raw frequencies and lengths.
BM25_K1 = 0.9
BM25_B = 0.4
MAX_TERM_CHARS = 64
MAX_QUERY_TERMS = 64
# Postings per block: a block's row stays a few kilobytes, so appending to a term's last block rewrites little.
BLOCK_POSTINGS = 256
# A posting as stored in a block: the chunk, how often the term is in it, and the chunk's length in terms.
POSTING = np.dtype([("chunk", "<i8"), ("frequency", "<u2"), ("length", "<u4")])
# Scores are rounded to this many decimals (see scores_of).
SCORE_DECIMALS = 9
_WRITE_BATCH = 1000
_BLOCK_UPDATE = (
    "UPDATE knowledge_postingblock SET postings = %s, size = %s, first_chunk = %s, last_chunk = %s WHERE id = %s"
)
# Candidates checked against the chunk table per statement (they exist, and pass the document filter).
_CHECK_BATCH = 2000

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


def _batches(values: Sequence[Any], size: int = _WRITE_BATCH) -> list[Sequence[Any]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


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
    runs one at a time, so term rows and blocks are never updated in two orders at once (no deadlocks), a term's
    last block has one writer, and the statistics stay exact.
    """
    lengths = {chunk_id: sum(counts.values()) for chunk_id, counts in analyzed}
    Collection.objects.filter(pk=collection_id).update(
        keyword_chunks=F("keyword_chunks") + len(analyzed), keyword_terms=F("keyword_terms") + sum(lengths.values())
    )
    holding = Counter(term for _, counts in analyzed for term in counts)
    term_ids = _terms_upsert(collection_id, holding)
    postings: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for chunk_id, counts in analyzed:
        for term, frequency in counts.items():
            postings[term_ids[term]].append((chunk_id, min(frequency, 65535), lengths[chunk_id]))
    _blocks_append({term_id: np.array(rows, dtype=POSTING) for term_id, rows in postings.items()})


def _terms_upsert(collection_id: Any, holding: Counter[str]) -> dict[str, int]:
    """Insert the terms or add to their chunk counts (sorted, so two writers would lock them in one order),
    returning their ids."""
    key = collection_key(collection_id)
    ids: dict[str, int] = {}
    with connection.cursor() as cursor:
        for batch in _batches(sorted(holding)):
            cursor.execute(
                "INSERT INTO knowledge_term (collection_id, text, chunk_count) "
                f"VALUES {_marks(len(batch), 3)} "
                "ON CONFLICT (collection_id, text) DO UPDATE SET "
                "chunk_count = knowledge_term.chunk_count + excluded.chunk_count "
                "RETURNING id, text",
                [value for term in batch for value in (key, term, holding[term])],
            )
            ids.update((text, term_id) for term_id, text in cursor.fetchall())
    return ids


def _block_row(postings: np.ndarray[Any, Any]) -> tuple[bytes, int, int, int]:
    """(postings, size, first_chunk, last_chunk) of a block: the chunk ids' least and greatest, not its first
    and last, since two ingestions may append ids out of order."""
    chunks = postings["chunk"]
    return postings.tobytes(), len(postings), int(chunks.min()), int(chunks.max())


def _blocks_append(postings: dict[int, np.ndarray[Any, Any]]) -> None:
    """Append each term's new postings to its last block while it has room, then to new blocks."""
    tails: dict[int, tuple[int, bytes]] = {}
    with connection.cursor() as cursor:
        for batch in _batches(sorted(postings)):
            cursor.execute(
                "SELECT term_id, id, postings FROM knowledge_postingblock "
                f"WHERE size < %s AND term_id IN ({_marks(len(batch))}) ORDER BY id",
                [BLOCK_POSTINGS, *batch],
            )
            tails.update((term_id, (block_id, bytes(data))) for term_id, block_id, data in cursor.fetchall())
    updates: list[tuple[Any, ...]] = []
    inserts: list[tuple[Any, ...]] = []
    for term_id, fresh in postings.items():
        if term_id in tails:
            block_id, data = tails[term_id]
            stored = np.frombuffer(data, dtype=POSTING)
            room = BLOCK_POSTINGS - len(stored)
            updates.append((*_block_row(np.concatenate([stored, fresh[:room]])), block_id))
            fresh = fresh[room:]
        for start in range(0, len(fresh), BLOCK_POSTINGS):
            inserts.append((term_id, *_block_row(fresh[start : start + BLOCK_POSTINGS])))
    with connection.cursor() as cursor:
        cursor.executemany(_BLOCK_UPDATE, updates)
        columns = "term_id, postings, size, first_chunk, last_chunk"
        if on_postgres():
            # COPY: several times faster than INSERT for the thousands of blocks a batch of chunks makes.
            with cursor.cursor.copy(f"COPY knowledge_postingblock ({columns}) FROM STDIN") as copy:
                for row in inserts:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO knowledge_postingblock ({columns}) VALUES (%s, %s, %s, %s, %s)", inserts)


def chunks_unindex(*, collection_id: Any, chunks: QuerySet[Chunk]) -> None:
    """Take chunks out of the keyword index before they are deleted (in the same transaction): their postings
    leave the blocks of their terms, found by analysing their text again, and terms no chunk holds any more go."""
    rows = list(chunks.values_list("id", "text", "term_count"))
    if not rows:
        return
    Collection.objects.filter(pk=collection_id).update(
        keyword_chunks=F("keyword_chunks") - len(rows),
        keyword_terms=F("keyword_terms") - sum(term_count for _, _, term_count in rows),
    )
    gone = np.array(sorted(chunk_id for chunk_id, _, _ in rows), dtype=np.int64)
    terms = sorted({term for _, text, _ in rows for term in analyze(text)})
    key = collection_key(collection_id)
    removed: Counter[int] = Counter()
    rewritten: list[tuple[Any, ...]] = []
    emptied: list[int] = []
    with connection.cursor() as cursor:
        for batch in _batches(terms):
            cursor.execute(
                "SELECT b.id, b.term_id, b.postings FROM knowledge_postingblock b "
                "JOIN knowledge_term t ON t.id = b.term_id "
                f"WHERE t.collection_id = %s AND t.text IN ({_marks(len(batch))}) "
                "AND b.first_chunk <= %s AND b.last_chunk >= %s",
                [key, *batch, int(gone[-1]), int(gone[0])],
            )
            for block_id, term_id, data in cursor.fetchall():
                postings = np.frombuffer(bytes(data), dtype=POSTING)
                kept = postings[~np.isin(postings["chunk"], gone)]
                if len(kept) == len(postings):
                    continue
                removed[term_id] += len(postings) - len(kept)
                if len(kept):
                    rewritten.append((*_block_row(kept), block_id))
                else:
                    emptied.append(block_id)
        cursor.executemany(_BLOCK_UPDATE, rewritten)
        for batch in _batches(emptied):
            cursor.execute(f"DELETE FROM knowledge_postingblock WHERE id IN ({_marks(len(batch))})", batch)
        cursor.executemany(
            "UPDATE knowledge_term SET chunk_count = chunk_count - %s WHERE id = %s",
            [(count, term_id) for term_id, count in sorted(removed.items())],
        )
        for batch in _batches(sorted(removed)):
            # A term left in no chunk has no postings left either: its blocks were emptied above.
            cursor.execute(f"DELETE FROM knowledge_term WHERE chunk_count <= 0 AND id IN ({_marks(len(batch))})", batch)


def collection_reindex(
    *, collection: Collection, batch_size: int = 2000, progress: Callable[[int], None] | None = None
) -> int:
    """Rebuild the collection's keyword index from its chunks' text (in the caller's transaction); returns the
    number of chunks indexed. ``progress(done)`` is called after each batch."""
    Collection.objects.filter(pk=collection.pk).update(keyword_chunks=0, keyword_terms=0)
    with connection.cursor() as cursor:
        key = collection_key(collection.pk)
        cursor.execute(
            "DELETE FROM knowledge_postingblock WHERE term_id IN "
            "(SELECT id FROM knowledge_term WHERE collection_id = %s)",
            [key],
        )
        cursor.execute("DELETE FROM knowledge_term WHERE collection_id = %s", [key])
    done, last = 0, 0
    chunks = Chunk.objects.filter(collection_id=collection.pk).order_by("id")  # a migration passes a historical row
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


def search(
    *, collections: Sequence[Collection], query: str, limit: int, documents: QuerySet[Document] | None = None
) -> list[tuple[int, float]]:
    """The ``limit`` chunks with the highest BM25 score for any of the query's terms, best first (ties by id)."""
    terms = query_terms(query)
    if not terms or not collections or limit < 1:
        return []
    weights, length_factor = _weights(collections, terms)
    if not weights:
        return []
    chunk_ids, scores = scores_of(weights, length_factor)
    return _best(chunk_ids, scores, limit=limit, collections=collections, documents=documents)


def _length_factor(chunk_total: float, term_total: float) -> float:
    """k1 b / the average chunk length, the coefficient of a chunk's length in BM25's denominator."""
    return BM25_K1 * BM25_B / max(float(term_total) / max(float(chunk_total), 1.0), 1.0)


def _weights(collections: Sequence[Collection], terms: list[str]) -> tuple[dict[int, float], float]:
    """Each query term row's weight, idf (k1 + 1), its document frequency summed over the collections; and the
    length factor of them all."""
    keys = [collection_key(c.pk) for c in collections]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(keyword_chunks), 0), coalesce(sum(keyword_terms), 0) "
            f"FROM knowledge_collection WHERE id IN ({_marks(len(keys))})",
            keys,
        )
        chunk_total, term_total = cursor.fetchone()
        cursor.execute(
            "SELECT id, text, chunk_count FROM knowledge_term "
            f"WHERE collection_id IN ({_marks(len(keys))}) AND text IN ({_marks(len(terms))}) AND chunk_count > 0",
            [*keys, *terms],
        )
        rows = cursor.fetchall()
    n = float(max(chunk_total, 1))
    holding: Counter[str] = Counter()
    for _, text, chunk_count in rows:
        holding[text] += chunk_count
    weights = {}
    for term_id, text, _ in rows:
        df = holding[text]
        weights[term_id] = math.log(1 + (n - df + 0.5) / (df + 0.5)) * (BM25_K1 + 1)
    return weights, _length_factor(chunk_total, term_total)


def scores_of(weights: dict[int, float], length_factor: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Every chunk holding a term of ``weights`` (term id: weight) and its BM25 score, from all their postings."""
    term_ids, blocks = [], []
    with connection.cursor() as cursor:
        for batch in _batches(sorted(weights)):
            cursor.execute(
                f"SELECT term_id, postings FROM knowledge_postingblock WHERE term_id IN ({_marks(len(batch))})",
                list(batch),
            )
            for term_id, data in cursor.fetchall():
                term_ids.append(term_id)
                blocks.append(bytes(data))
    if not blocks:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    postings = np.frombuffer(b"".join(blocks), dtype=POSTING)
    sizes = [len(block) // POSTING.itemsize for block in blocks]
    weight = np.repeat(np.array([weights[term_id] for term_id in term_ids]), sizes)
    frequency = postings["frequency"].astype(np.float64)
    parts = weight * frequency / (frequency + BM25_K1 * (1 - BM25_B) + length_factor * postings["length"])
    chunks = postings["chunk"]
    low = int(chunks.min())
    span = int(chunks.max()) - low + 1
    if span <= 4 * len(chunks) + 65536:
        # Chunk ids of a collection are mostly dense: summing into an array over their range beats sorting.
        totals = np.bincount(chunks - low, weights=parts, minlength=span)
        present = np.flatnonzero(totals)
        chunk_ids: np.ndarray[Any, Any] = present + low
        scores: np.ndarray[Any, Any] = totals[present]
    else:
        unique, inverse = np.unique(chunks, return_inverse=True)
        chunk_ids, scores = unique, np.bincount(inverse, weights=parts)
    # Rounded: chunks whose scores are equal but for the order the floats were summed in tie, and ties go by id.
    return chunk_ids, np.round(scores, SCORE_DECIMALS)


def _ranked(chunk_ids: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], count: int) -> np.ndarray[Any, Any]:
    """Positions of the ``count`` best chunks, best first, ties by chunk id (the order is total, so a longer
    prefix extends a shorter one)."""
    if count < len(scores):
        kth = np.partition(scores, len(scores) - count)[len(scores) - count]
        chosen = np.flatnonzero(scores >= kth)
    else:
        chosen = np.arange(len(scores))
    return chosen[np.lexsort((chunk_ids[chosen], -scores[chosen]))][:count]


def _best(
    chunk_ids: np.ndarray[Any, Any],
    scores: np.ndarray[Any, Any],
    *,
    limit: int,
    collections: Sequence[Collection],
    documents: QuerySet[Document] | None,
) -> list[tuple[int, float]]:
    """The best ``limit`` chunks that are still in the collections and, with ``documents``, in those documents:
    checked in the database a batch at a time, best first, until enough pass."""
    found: list[tuple[int, float]] = []
    checked, wanted = 0, 2 * limit + 16
    while len(found) < limit and checked < len(chunk_ids):
        wanted = min(wanted, checked + _CHECK_BATCH)
        batch = _ranked(chunk_ids, scores, wanted)[checked:]
        candidates = [int(chunk_id) for chunk_id in chunk_ids[batch]]
        passing = Chunk.objects.filter(id__in=candidates, collection__in=collections)
        if documents is not None:
            passing = passing.filter(document__in=documents)
        kept = set(passing.values_list("id", flat=True))
        found += [
            (chunk_id, float(scores[i])) for chunk_id, i in zip(candidates, batch, strict=True) if chunk_id in kept
        ]
        checked, wanted = wanted, wanted * 4
    return found[:limit]
