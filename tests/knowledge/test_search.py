from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from knowledge import index
from knowledge import search as knowledge_search
from knowledge.embedders import Embedder
from knowledge.models import Collection
from knowledge.pipeline import document_ingest
from knowledge.search import Hit, SearchError, fuse, search
from tests.knowledge.factories import CollectionFactory, add_document

pytestmark = pytest.mark.django_db

CORPUS = {
    "cats": ("Cats are small domesticated felines that purr and hunt mice.", {"kind": "animal", "year": 2020}),
    "dogs": ("Dogs are loyal canines, often trained to herd sheep.", {"kind": "animal", "year": 2022}),
    "rust": ("Rust is a systems programming language focused on memory safety.", {"kind": "tech", "year": 2015}),
    "code": ("The error code XK-4471 means the flux capacitor overheated.", {"kind": "tech", "year": 2024}),
    "bake": ("To bake bread, knead the dough and let it rise overnight.", {"kind": "food", "year": 2019}),
}


@pytest.fixture
def collection(minilm: Embedder) -> Collection:
    collection = CollectionFactory.create()
    for title, (text, metadata) in CORPUS.items():
        document = add_document(collection, text, title=title, filename=f"{title}.txt", metadata=metadata)
        assert document_ingest(document_id=document.pk) == "ready"
    return collection


def titles(hits: list[Hit]) -> list[str]:
    return [hit.document_title for hit in hits]


def test_vector_search_finds_meaning_without_shared_words(collection: Collection) -> None:
    hits = search(collections=[collection], query="a kitten chasing rodents", mode="vector", top_k=2)
    assert titles(hits)[0] == "cats"
    assert hits[0].vector_score is not None and hits[0].score == hits[0].vector_score
    assert hits[0].score > hits[1].score


def test_keyword_search_finds_exact_identifiers(collection: Collection) -> None:
    hits = search(collections=[collection], query="XK-4471", mode="keyword", top_k=3)
    assert titles(hits) == ["code"]
    assert hits[0].keyword_score is not None and hits[0].keyword_score > 0
    assert hits[0].vector_score is None


def test_keyword_search_weighs_a_rare_word_above_a_common_one(minilm: Embedder) -> None:
    # BM25 on both databases: "kinase" is in one document, "protein" in every other one. The document with the rare
    # word ranks first even against one repeating the common word (a rank without inverse document frequency,
    # like PostgreSQL's ts_rank_cd, put the repetition first).
    collection = CollectionFactory.create()
    texts = {
        "repeats": "Protein folding, protein structure and protein stability were measured.",
        "rare": "The kinase was inhibited by the new compound.",
        **{f"common-{i}": f"Protein sample {i} was stored at four degrees." for i in range(5)},
    }
    for title, text in texts.items():
        document = add_document(collection, text, title=title, filename=f"{title}.txt")
        assert document_ingest(document_id=document.pk) == "ready"

    hits = search(collections=[collection], query="protein kinase", mode="keyword", top_k=10)

    assert titles(hits)[0] == "rare"
    assert titles(hits)[1] == "repeats", "among the common word's documents, more occurrences rank higher"
    assert len(hits) == len(texts)
    assert all(h.keyword_score is not None and h.keyword_score > 0 for h in hits)


def test_hybrid_search_counts_keyword_and_vector_evidence(collection: Collection) -> None:
    # "XK-4471" is only a keyword match; "felines purring" is only a meaning match: hybrid finds both.
    hits = search(collections=[collection], query="XK-4471 felines purring", mode="hybrid", top_k=2)
    assert set(titles(hits)) == {"code", "cats"}
    for hit in hits:
        assert hit.vector_rank is not None or hit.keyword_rank is not None
    both = [h for h in hits if h.vector_rank and h.keyword_rank]
    assert both, "a chunk with both kinds of evidence ranks above one with a single kind"
    assert hits[0] in both


def test_hits_carry_document_chunk_text_location_and_scores(collection: Collection) -> None:
    hit = search(collections=[collection], query="bread dough", top_k=1)[0]
    body = hit.as_dict()
    assert body["document"]["title"] == "bake"
    assert body["document"]["metadata"] == {"kind": "food", "year": 2019}
    assert body["text"].startswith("To bake bread")
    assert body["location"] == {"page": None, "heading_path": [], "start": 0, "end": len(body["text"])}
    assert isinstance(body["chunk_id"], int) and body["score"] > 0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"kind": "tech"}, {"rust", "code"}),
        ({"kind": {"in": ["food", "tech"]}}, {"rust", "code", "bake"}),
        ({"year": {"gte": 2020, "lt": 2024}}, {"cats", "dogs"}),
        ({"kind": "animal", "year": {"gt": 2021}}, {"dogs"}),
    ],
)
def test_metadata_filters_narrow_every_mode(
    collection: Collection, filters: dict[str, Any], expected: set[str]
) -> None:
    for mode in ("vector", "keyword", "hybrid"):
        hits = search(
            collections=[collection], query="animals programming bread code", mode=mode, top_k=10, filters=filters
        )
        assert set(titles(hits)) <= expected, mode
        if mode != "keyword":
            assert set(titles(hits)) == expected, mode


def test_search_spans_several_collections(collection: Collection) -> None:
    other = CollectionFactory.create(tenant=collection.tenant)
    document_ingest(document_id=add_document(other, "Penguins live in Antarctica.", title="penguins").pk)
    hits = search(collections=[collection, other], query="birds in the cold south", mode="vector", top_k=1)
    assert titles(hits) == ["penguins"] and hits[0].collection == other.slug


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": "   "}, "query"),
        ({"query": "x" * 5000}, "query"),
        ({"query": "cats", "mode": "fuzzy"}, "mode"),
        ({"query": "cats", "top_k": 0}, "top_k"),
        ({"query": "cats", "filters": {"colour": "red"}}, "filters"),
        ({"query": "cats", "filters": {"kind": {"like": "a%"}}}, "filters"),
        ({"query": "cats", "filters": {"kind": {"in": "animal"}}}, "filters"),
        ({"query": "cats", "alpha": 1.5}, "alpha"),
        ({"query": "cats", "alpha": -0.1}, "alpha"),
        ({"query": "cats", "top_k": 10, "candidates": 9}, "candidates"),
        ({"query": "cats", "candidates": 1001}, "candidates"),
    ],
)
def test_bad_requests_say_what_is_wrong(collection: Collection, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SearchError) as caught:
        search(collections=[collection], **kwargs)
    assert caught.value.field == field and str(caught.value)


def test_a_new_document_is_found_at_once(collection: Collection) -> None:
    search(collections=[collection], query="warm the cache", mode="vector")
    document_ingest(document_id=add_document(collection, "Quasars emit radio waves.", title="quasar").pk)
    assert titles(search(collections=[collection], query="quasar radio", mode="vector", top_k=1)) == ["quasar"]


def ranking(*chunk_ids: int) -> list[index.Scored]:
    return [index.Scored(chunk_id, 1.0 / position) for position, chunk_id in enumerate(chunk_ids, start=1)]


def test_fusion_weighs_each_leg_by_alpha() -> None:
    vector, keyword = ranking(1, 2, 3), ranking(3, 4)
    fused = dict(fuse(vector, keyword, alpha=0.25, rrf_k=60))
    assert fused[3] == pytest.approx(0.25 / 63 + 0.75 / 61)
    assert fused[1] == pytest.approx(0.25 / 61)
    assert fused[4] == pytest.approx(0.75 / 62)
    assert [chunk for chunk, _ in fuse(vector, keyword, alpha=0.5)] == [3, 1, 2, 4]


def test_fusion_at_either_end_of_alpha_is_that_legs_order_alone() -> None:
    vector, keyword = ranking(1, 2, 3), ranking(3, 4)
    assert [chunk for chunk, _ in fuse(vector, keyword, alpha=1.0)] == [1, 2, 3]
    assert [chunk for chunk, _ in fuse(vector, keyword, alpha=0.0)] == [3, 4]


def test_hybrid_alpha_leans_toward_meaning_or_words(collection: Collection) -> None:
    query = "XK-4471 a kitten chasing rodents"
    by_meaning = search(collections=[collection], query=query, top_k=3, alpha=1.0)
    by_words = search(collections=[collection], query=query, top_k=3, alpha=0.0)
    assert titles(by_meaning) == titles(search(collections=[collection], query=query, mode="vector", top_k=3))
    assert titles(by_words) == titles(search(collections=[collection], query=query, mode="keyword", top_k=3))
    assert "cats" not in titles(by_words), "with alpha 0 a chunk only the vector leg found does not count"
    assert titles(by_meaning)[0] == "cats"


def test_candidates_is_the_depth_of_each_leg(collection: Collection, monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[tuple[str, int]] = []
    keyword_search, vector_search = index.keyword_search, index.vector_search

    def keyword_spy(**kwargs: Any) -> list[index.Scored]:
        limits.append(("keyword", kwargs["limit"]))
        return keyword_search(**kwargs)

    def vector_spy(**kwargs: Any) -> list[index.Scored]:
        limits.append(("vector", kwargs["limit"]))
        return vector_search(**kwargs)

    monkeypatch.setattr(index, "keyword_search", keyword_spy)
    monkeypatch.setattr(index, "vector_search", vector_spy)
    search(collections=[collection], query="cats", top_k=2, candidates=3)
    search(collections=[collection], query="cats", top_k=2)
    search(collections=[collection], query="cats", top_k=80)
    depths = (3, knowledge_search.DEFAULT_CANDIDATES, max(80 * knowledge_search.CANDIDATES_PER_HIT, 50))
    assert sorted(limits) == sorted((leg, depth) for depth in depths for leg in ("keyword", "vector"))


def test_inside_a_transaction_both_legs_run_on_the_callers_connection(
    collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test runs in a transaction: another connection could not see the collection's chunks at all.
    assert connection.in_atomic_block
    threads = record_vector_threads(monkeypatch)
    hits = search(collections=[collection], query="XK-4471 felines purring", top_k=2)
    assert set(titles(hits)) == {"code", "cats"}
    assert threads == [threading.current_thread().name]


def record_vector_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    threads: list[str] = []
    vector_search = index.vector_search

    def spy(**kwargs: Any) -> list[index.Scored]:
        threads.append(threading.current_thread().name)
        return vector_search(**kwargs)

    monkeypatch.setattr(index, "vector_search", spy)
    return threads


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_vector_leg_runs_beside_the_keyword_leg(
    minilm: Embedder, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = CollectionFactory.create()
    for title, (text, metadata) in CORPUS.items():
        document = add_document(collection, text, title=title, filename=f"{title}.txt", metadata=metadata)
        assert document_ingest(document_id=document.pk) == "ready"
    threads = record_vector_threads(monkeypatch)
    assert not connection.in_atomic_block

    concurrent = [h.as_dict() for h in search(collections=[collection], query="XK-4471 felines purring", top_k=5)]
    settings.KNOWLEDGE_SEARCH_CONCURRENT_LEGS = False
    in_turn = [h.as_dict() for h in search(collections=[collection], query="XK-4471 felines purring", top_k=5)]

    assert concurrent == in_turn
    assert threads[0].startswith("knowledge-search") and threads[1] == threading.current_thread().name
    if connection.vendor == "postgresql":  # (Django never closes SQLite's in-memory test database)
        # The pool thread gave its connection back: an idle thread holds none.
        assert knowledge_search._pool().submit(lambda: connection.connection is None).result()


@pytest.mark.django_db(transaction=True)
def test_a_failing_keyword_leg_still_waits_for_the_vector_leg(
    minilm: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = CollectionFactory.create()
    document_ingest(document_id=add_document(collection, "Cats purr.", title="cats").pk)
    finished = threading.Event()
    vector_search = index.vector_search

    def slow_vector(**kwargs: Any) -> list[index.Scored]:
        found = vector_search(**kwargs)
        finished.set()
        return found

    def broken_keyword(**kwargs: Any) -> list[index.Scored]:
        raise RuntimeError("keyword leg down")

    monkeypatch.setattr(index, "vector_search", slow_vector)
    monkeypatch.setattr(index, "keyword_search", broken_keyword)
    with pytest.raises(RuntimeError, match="keyword leg down"):
        search(collections=[collection], query="cats", top_k=1)
    assert finished.is_set()
