from __future__ import annotations

import io
import math
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from knowledge import keywords, services
from knowledge.models import Chunk, Collection, Document, PostingBlock, Term
from knowledge.pipeline import document_claim
from knowledge.search import filtered_documents
from tests.knowledge.factories import CollectionFactory, add_document, indexed_postings

pytestmark = pytest.mark.django_db

_WORDS = (
    "protein cell gene kinase receptor membrane patient trial dose therapy tumour immune network model "
    "layer gradient cache index query vector replica cluster shard consensus failure recovery policy"
)
VOCABULARY = _WORDS.split()


def store(collection: Collection, texts: list[str], *, metadata: dict[str, Any] | None = None) -> Document:
    """A document whose chunks are ``texts``, stored through the services (vectors are irrelevant here)."""
    document = add_document(collection, "\n\n".join(texts), metadata=metadata or {})
    claimed = document_claim(document_id=document.pk)
    assert claimed is not None
    # Eight dimensions: outside the HNSW indexes (384, 1536), which many equal vectors would clog for later tests.
    vector = np.ones(8, dtype=np.float32) / math.sqrt(8)
    rows: list[dict[str, Any]] = [
        {"text": t, "token_count": len(t.split()), "page": None, "heading_path": [], "start": 0, "end": len(t)}
        for t in texts
    ]
    stored = services.document_chunks_replace(
        document_id=document.pk,
        sha256=claimed.sha256,
        chunks=[{**row, "embedding": vector} for row in rows],
        dimensions=8,
    )
    assert stored is not None
    return stored


def brute_force_bm25(collections: list[Collection], query: str, limit: int) -> list[tuple[int, float]]:
    """BM25 computed from the chunks' text alone, every chunk scored: what the index must return."""
    chunks = {c.pk: Counter(keywords.analyze(c.text)) for c in Chunk.objects.filter(collection__in=collections)}
    n = len(chunks)
    average = max(sum(sum(c.values()) for c in chunks.values()) / n, 1.0)
    scores: dict[int, float] = {}
    for term in keywords.query_terms(query):
        holding = [(chunk_id, counts[term]) for chunk_id, counts in chunks.items() if term in counts]
        idf = math.log(1 + (n - len(holding) + 0.5) / (len(holding) + 0.5))
        for chunk_id, tf in holding:
            length = sum(chunks[chunk_id].values())
            k1, b = keywords.BM25_K1, keywords.BM25_B
            scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * tf * (k1 + 1) / (
                tf + k1 * (1 - b + b * length / average)
            )
    rounded = {chunk_id: round(score, keywords.SCORE_DECIMALS) for chunk_id, score in scores.items()}
    return sorted(rounded.items(), key=lambda item: (-item[1], item[0]))[:limit]


def assert_same_ranking(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [chunk_id for chunk_id, _ in found] == [chunk_id for chunk_id, _ in expected]
    assert [round(score, 9) for _, score in found] == [round(score, 9) for _, score in expected]


def random_texts(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(3, 30))) for _ in range(count)]


def test_analysis_lowercases_drops_stop_words_and_stems() -> None:
    assert keywords.analyze("The Running of the Proteins, and XK-4471!") == ["run", "protein", "xk", "4471"]
    assert keywords.query_terms("proteins protein PROTEIN kinases") == ["protein", "kinas"]


@pytest.mark.parametrize("block_postings", [keywords.BLOCK_POSTINGS, 3])
def test_search_returns_the_exact_bm25_top_k_of_a_full_scan(
    block_postings: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keywords, "BLOCK_POSTINGS", block_postings)  # 3: every term's postings over many blocks
    rng = random.Random(7)
    collection = CollectionFactory.create()
    documents = [store(collection, random_texts(rng, 40)) for _ in range(6)]
    services.document_delete(document=documents[2])  # blocks rewritten in the middle of their terms' lists
    store(collection, random_texts(rng, 40))
    assert not PostingBlock.objects.filter(size__gt=block_postings).exists()
    for _ in range(25):
        query = " ".join(rng.sample(VOCABULARY, rng.randint(1, 8)))
        found = keywords.search(collections=[collection], query=query, limit=10)
        assert_same_ranking(found, brute_force_bm25([collection], query, 10))


def test_a_search_takes_four_statements_however_many_blocks_its_words_have(
    monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    monkeypatch.setattr(keywords, "BLOCK_POSTINGS", 3)
    collection = CollectionFactory.create()
    store(collection, random_texts(random.Random(5), 60))
    assert PostingBlock.objects.count() > 60
    # The collection's totals, the words' terms, their blocks, and the best chunks checked against the table.
    with django_assert_num_queries(4):
        found = keywords.search(collections=[collection], query="kinase receptor cache", limit=10)
    assert len(found) == 10


def test_blocks_hold_each_chunks_terms_once_with_their_frequency() -> None:
    collection = CollectionFactory.create()
    document = store(collection, ["kinase kinase receptor", "receptor membrane"])
    first, second = Chunk.objects.filter(document=document).order_by("position").values_list("id", flat=True)
    assert indexed_postings() == sorted(
        [("kinas", first, 2), ("receptor", first, 1), ("receptor", second, 1), ("membran", second, 1)]
    )


def test_statistics_follow_ingestion_replacement_and_deletion() -> None:
    collection = CollectionFactory.create()
    first = store(collection, ["kinase kinase receptor", "receptor membrane"])
    store(collection, ["membrane"])
    collection.refresh_from_db()
    assert (collection.keyword_chunks, collection.keyword_terms) == (3, 6)
    assert dict(Term.objects.filter(collection=collection).values_list("text", "chunk_count")) == {
        "kinas": 1,
        "receptor": 2,
        "membran": 2,
    }
    services.document_delete(document=first)
    collection.refresh_from_db()
    assert (collection.keyword_chunks, collection.keyword_terms) == (1, 1)
    assert dict(Term.objects.filter(collection=collection).values_list("text", "chunk_count")) == {"membran": 1}
    assert [term for term, _, _ in indexed_postings()] == ["membran"]


def test_a_reingested_document_is_found_by_its_new_words_never_by_its_old_ones() -> None:
    collection = CollectionFactory.create()
    document = store(collection, ["zeppelins drift over the harbour"])
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PENDING)
    claimed = document_claim(document_id=document.pk)
    assert claimed is not None
    services.document_chunks_replace(
        document_id=document.pk,
        sha256=claimed.sha256,
        chunks=[
            {
                "text": "submarines dive under the ice",
                "token_count": 5,
                "page": None,
                "heading_path": [],
                "start": 0,
                "end": 29,
                "embedding": np.ones(8, dtype=np.float32),
            }
        ],
        dimensions=8,
    )
    assert keywords.search(collections=[collection], query="zeppelins harbour", limit=5) == []
    [(chunk_id, _)] = keywords.search(collections=[collection], query="submarines", limit=5)
    assert Chunk.objects.get(pk=chunk_id).document_id == document.pk
    assert not Term.objects.filter(collection=collection, text="zeppelin").exists()


def test_a_failed_ingestion_takes_the_documents_words_out_of_the_index() -> None:
    collection = CollectionFactory.create()
    document = store(collection, ["zeppelins drift over the harbour"])
    services.document_fail(document_id=document.pk, sha256=document.sha256, reason="test")
    assert keywords.search(collections=[collection], query="zeppelins", limit=5) == []
    assert Collection.objects.values_list("keyword_chunks", flat=True).get(pk=collection.pk) == 0


def test_collections_keep_their_own_words_and_statistics() -> None:
    mine, theirs = CollectionFactory.create(), CollectionFactory.create()
    store(mine, ["kinase inhibitors in trials", "a trial of a receptor"])
    store(theirs, ["kinase " * 5, "kinase receptor", "kinase membrane"])
    found = keywords.search(collections=[mine], query="kinase", limit=10)
    assert {Chunk.objects.get(pk=chunk_id).collection_id for chunk_id, _ in found} == {mine.pk}
    # The inverse document frequency is mine alone: one of my two chunks holds "kinase".
    assert_same_ranking(found, brute_force_bm25([mine], "kinase", 10))
    both = keywords.search(collections=[mine, theirs], query="kinase receptor", limit=10)
    assert_same_ranking(both, brute_force_bm25([mine, theirs], "kinase receptor", 10))


def test_metadata_filters_restrict_the_keyword_hits() -> None:
    collection = CollectionFactory.create()
    store(collection, ["kinase assay in the lab"], metadata={"team": "lab"})
    field = store(collection, ["kinase survey in the field"], metadata={"team": "field"})
    documents = filtered_documents([collection], {"team": "field"})
    found = keywords.search(collections=[collection], query="kinase", limit=10, documents=documents)
    assert [Chunk.objects.get(pk=chunk_id).document_id for chunk_id, _ in found] == [field.pk]


def test_a_filter_passing_only_low_ranked_chunks_still_fills_the_top_k() -> None:
    collection = CollectionFactory.create()
    store(collection, ["kinase kinase kinase"] * 80, metadata={"team": "lab"})
    field = store(collection, ["a kinase survey, in the field, of many other words"], metadata={"team": "field"})
    documents = filtered_documents([collection], {"team": "field"})
    found = keywords.search(collections=[collection], query="kinase", limit=3, documents=documents)
    assert [Chunk.objects.get(pk=chunk_id).document_id for chunk_id, _ in found] == [field.pk]


def test_chunks_deleted_outside_the_services_are_never_hits() -> None:
    collection = CollectionFactory.create()
    store(collection, ["kinase kinase"] * 30)
    kept = store(collection, ["kinase and other words"])
    Chunk.objects.exclude(document=kept).delete()  # the index is not told: its blocks still hold them
    found = keywords.search(collections=[collection], query="kinase", limit=5)
    assert [Chunk.objects.get(pk=chunk_id).document_id for chunk_id, _ in found] == [kept.pk]


def test_the_rebuild_command_restores_a_lost_index(capsys: pytest.CaptureFixture[str]) -> None:
    collection = CollectionFactory.create()
    rng = random.Random(3)
    store(collection, random_texts(rng, 30))
    before = keywords.search(collections=[collection], query="kinase receptor cache", limit=10)
    PostingBlock.objects.all().delete()
    Term.objects.all().delete()
    Collection.objects.filter(pk=collection.pk).update(keyword_chunks=0, keyword_terms=0)
    assert keywords.search(collections=[collection], query="kinase receptor cache", limit=10) == []
    out = io.StringIO()
    call_command("rebuild_keyword_index", collection.slug, tenant=collection.tenant.slug, stdout=out)
    assert f"{collection.tenant.slug}/{collection.slug}: 30 chunks indexed" in out.getvalue()
    assert "30/30" in capsys.readouterr().err  # the progress bar
    assert keywords.search(collections=[collection], query="kinase receptor cache", limit=10) == before


def test_the_rebuild_command_needs_collections_or_all() -> None:
    with pytest.raises(CommandError, match="Name the collections, or give --all"):
        call_command("rebuild_keyword_index")
