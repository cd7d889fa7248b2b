"""The embedders: the bundled local model, and an OpenAI-compatible endpoint over real HTTP (a loopback server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from knowledge.embedders import LOCAL_MINILM, Embedder, EmbeddingError, get_embedder
from knowledge.models import Chunk, Collection
from knowledge.pipeline import document_ingest
from knowledge.search import search
from tests.knowledge.embeddings_server import EmbeddingsServer, vector_for
from tests.knowledge.factories import CollectionFactory, add_document


@pytest.fixture
def server(settings: Any) -> Iterator[EmbeddingsServer]:
    server = EmbeddingsServer(dimensions=8)
    settings.KNOWLEDGE_OPENAI_BASE_URL = server.base_url
    settings.KNOWLEDGE_OPENAI_API_KEY = "sk-loopback"
    settings.KNOWLEDGE_EMBED_BATCH_SIZE = 2
    try:
        yield server
    finally:
        server.close()


def test_the_local_model_is_one_object_per_process_with_normalised_384_dimension_vectors(minilm: Embedder) -> None:
    assert get_embedder(LOCAL_MINILM) is minilm
    vectors = minilm.embed(["a cat sat on the mat", "a kitten sat on the rug", "quarterly tax filing"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_token_counts_of_short_texts_are_remembered_in_a_bounded_table(
    minilm: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge import embedders

    monkeypatch.setattr(embedders, "_REMEMBERED_COUNTS", 3)
    counts: dict[str, int] = minilm._counts  # type: ignore[attr-defined]
    counts.clear()
    words = ["photosynthesis", "the", "antidisestablishmentarianism", "cat"]
    assert [minilm.count_tokens(w) for w in words] == [minilm.count_tokens(w) for w in words]
    assert minilm.count_tokens("photosynthesis") > 1 and minilm.count_tokens("the") == 1
    assert len(counts) <= 3
    long = "a sentence longer than forty characters is counted each time"
    tokenizer = minilm._tokenizer  # type: ignore[attr-defined]
    assert minilm.count_tokens(long) == len(tokenizer.encode(long, add_special_tokens=False).ids) > 5
    assert long not in counts


def test_unknown_embedder_names_are_refused() -> None:
    with pytest.raises(EmbeddingError, match="Unknown embedder"):
        get_embedder("hub/some-model")


def test_the_openai_embedder_speaks_the_wire_protocol_and_keeps_the_order(server: EmbeddingsServer) -> None:
    embedder = get_embedder("openai/text-embedding-3-small")
    vectors = embedder.embed(["first", "second", "third"])
    expected = np.array([vector_for(t, 8) for t in ("first", "second", "third")], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(vectors, expected)
    assert server.requests[0]["path"] == "/v1/embeddings"
    assert server.requests[0]["body"]["model"] == "text-embedding-3-small"
    assert server.requests[0]["auth"] == "Bearer sk-loopback"
    assert embedder.dimensions == 8


def test_a_provider_failure_is_an_embedding_error(server: EmbeddingsServer) -> None:
    server.fail_with = 400
    with pytest.raises(EmbeddingError, match="embeddings provider failed"):
        get_embedder("openai/m").embed(["x"])


@pytest.mark.django_db
def test_a_collection_on_the_openai_embedder_ingests_in_batches_and_searches(
    server: EmbeddingsServer, settings: Any
) -> None:
    collection: Collection = CollectionFactory.create(embedder="openai/m", chunk_size=16, chunk_overlap=0)
    assert collection.dimensions == 0  # learnt from the first vectors
    text = "\n\n".join(f"Paragraph {n} talks about topic number {n} at some length." for n in range(5))
    document = add_document(collection, text)
    assert document_ingest(document_id=document.pk) == "ready"
    collection.refresh_from_db()
    assert collection.dimensions == 8
    assert all(len(r["body"]["input"]) <= 2 for r in server.requests)  # KNOWLEDGE_EMBED_BATCH_SIZE
    # The loopback's vectors are hashes of the text: a chunk's own text finds that chunk first.
    target = Chunk.objects.filter(document=document).order_by("position")[2]
    hits = search(collections=[collection], query=target.text, mode="vector")
    assert hits[0].chunk_id == target.pk and hits[0].score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.django_db
def test_a_provider_outage_fails_the_document_with_the_reason(server: EmbeddingsServer) -> None:
    collection = CollectionFactory.create(embedder="openai/m")
    server.fail_with = 500
    document = add_document(collection, "Some text.")
    assert document_ingest(document_id=document.pk) == "failed"
    document.refresh_from_db()
    assert "embeddings provider failed" in document.error
