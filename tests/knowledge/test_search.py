from __future__ import annotations

from typing import Any

import pytest

from knowledge.embedders import Embedder
from knowledge.models import Collection
from knowledge.pipeline import document_ingest
from knowledge.search import Hit, SearchError, search
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
