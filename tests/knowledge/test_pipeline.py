from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from knowledge import services
from knowledge.embedders import Embedder, EmbeddingError
from knowledge.models import Chunk, Collection, Document, PostingBlock, Term
from knowledge.pipeline import Ingestion, document_claim, document_ingest, documents_ingest, files_ingest
from knowledge.search import search
from tests.helpers import drain_sent_tasks
from tests.knowledge.factories import CollectionFactory, add_document, indexed_postings
from tests.sample_files import make_encrypted_pdf, make_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture
def collection(minilm: Embedder) -> Collection:
    return CollectionFactory.create(chunk_size=64, chunk_overlap=8)


def _docx(heading: str, paragraph: str) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


SAMPLES: dict[str, tuple[bytes, str, str]] = {
    "notes.txt": (b"Plain text about penguins in Antarctica.", "text/plain", "penguins"),
    "guide.md": (b"# Guide\n\n## Setup\n\nInstall the widget first.", "text/markdown", "widget"),
    "page.html": (
        b"<html><head><script>var hidden = 1;</script></head><body><h1>Title</h1><p>Volcanoes erupt.</p></body></html>",
        "text/html",
        "Volcanoes",
    ),
    "table.csv": (b"city,country\nZurich,Switzerland\nLyon,France\n", "text/csv", "Zurich"),
    "data.json": (json.dumps({"animal": "otter", "habitat": "river"}).encode(), "application/json", "otter"),
}


@pytest.mark.parametrize("filename", sorted(SAMPLES))
def test_every_text_format_is_ingested_into_chunks(collection: Collection, filename: str) -> None:
    content, media_type, word = SAMPLES[filename]
    document = services.document_submit(
        collection=collection, content=content, filename=filename, enqueue=False
    ).document
    assert document.media_type == media_type
    assert document_ingest(document_id=document.pk) == "ready"
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    chunks = list(document.chunks.all())
    assert document.chunk_count == len(chunks) >= 1
    assert word in " ".join(c.text for c in chunks)
    assert "hidden" not in " ".join(c.text for c in chunks)  # a real HTML parser drops scripts
    assert chunks[0].embedding.shape == (384,)


def test_pdf_chunks_cite_their_page(collection: Collection) -> None:
    content = make_pdf("Glaciers retreat every summer.", "Deserts expand slowly.")
    document = services.document_submit(
        collection=collection, content=content, filename="x.pdf", enqueue=False
    ).document
    assert document.media_type == "application/pdf"
    assert document_ingest(document_id=document.pk) == "ready"
    pages = {c.page: c.text for c in Chunk.objects.filter(document=document)}
    assert "Glaciers" in pages[1] and "Deserts" in pages[2]


def test_docx_chunks_carry_their_heading_path(collection: Collection) -> None:
    content = _docx("Safety", "Wear gloves when handling acid.")
    document = services.document_submit(
        collection=collection, content=content, filename="x.docx", enqueue=False
    ).document
    assert document_ingest(document_id=document.pk) == "ready"
    chunk = Chunk.objects.get(document=document)
    assert chunk.heading_path == ["Safety"]
    assert "gloves" in chunk.text


OTHER_LANGUAGES = {
    "fr.txt": ("Les élèves étudient la photosynthèse à l'école.", "photosynthèse"),
    "de.txt": ("Die Straßenbahn fährt über die Brücke nach Zürich.", "straßenbahn"),
    "ru.txt": ("Ледокол прокладывает путь через замёрзшее море.", "ледокол"),
    "el.txt": ("Η Ακρόπολη βρίσκεται στην Αθήνα.", "ακρόπολη"),  # noqa: RUF001 - Greek, on purpose
    "zh.txt": ("熊猫 吃 竹子。 北京 是 首都。", "熊猫"),
}


def test_documents_in_other_languages_are_chunked_with_true_offsets_and_found_by_their_words(
    collection: Collection,
) -> None:
    for filename, (text, _) in OTHER_LANGUAGES.items():
        document = add_document(collection, text, filename=filename, title=filename)
        assert document_ingest(document_id=document.pk) == "ready"
    for filename, (text, word) in OTHER_LANGUAGES.items():
        chunk = Chunk.objects.get(document__title=filename)
        assert chunk.text == text
        assert text[chunk.start : chunk.end] == chunk.text  # characters, not UTF-8 bytes
        assert chunk.token_count > 0
        # Words are told apart by Unicode, not ASCII; written without spaces (Chinese, Japanese), a word is only
        # found where the text separates it (the README says so).
        hits = search(collections=[collection], query=word, mode="keyword", top_k=3)
        assert [hit.document_title for hit in hits] == [filename], word


def test_the_same_bytes_are_not_ingested_twice(collection: Collection) -> None:
    first = services.document_submit(collection=collection, content=b"same", filename="a.txt", enqueue=False)
    second = services.document_submit(collection=collection, content=b"same", filename="b.txt", enqueue=False)
    assert (first.outcome, second.outcome) == ("added", "unchanged")
    assert second.document.pk == first.document.pk
    assert Document.objects.filter(collection=collection).count() == 1


def test_new_bytes_from_the_same_source_replace_the_chunks_atomically(
    collection: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    old = add_document(collection, "The old policy allows cats.", source="policy")
    document_ingest(document_id=old.pk)
    old_file = Path(old.file.path)
    with django_capture_on_commit_callbacks(execute=True):
        submitted = services.document_submit(
            collection=collection,
            content=b"The new policy allows dogs.",
            filename="p.txt",
            source="policy",
            enqueue=False,
        )
    assert submitted.outcome == "replaced" and submitted.document.pk == old.pk
    # Until the new version is ingested, the old chunks are still the document's.
    assert "cats" in Chunk.objects.get(document=old).text
    assert document_ingest(document_id=old.pk) == "ready"
    assert [c.text for c in Chunk.objects.filter(document=old)] == ["The new policy allows dogs."]
    assert not old_file.exists() and Path(submitted.document.file.path).exists()


def test_a_result_for_bytes_the_document_no_longer_has_is_discarded(collection: Collection) -> None:
    document = add_document(collection, "Version one.", source="s")
    claimed = document_claim(document_id=document.pk)
    assert claimed is not None
    assert document_claim(document_id=document.pk) is None  # a second claimer gets nothing
    services.document_submit(
        collection=collection, content=b"Version two.", filename="s.txt", source="s", enqueue=False
    )
    stored = services.document_chunks_replace(document_id=document.pk, sha256=claimed.sha256, chunks=[], dimensions=384)
    assert stored is None
    assert document_ingest(document_id=document.pk) == "ready"
    assert Chunk.objects.get(document=document).text == "Version two."


@pytest.mark.parametrize(
    ("content", "filename", "reason"),
    [
        (b"   \n\n  ", "empty.txt", "no text"),
        (b"%PDF-1.4\nthis is not really a pdf", "broken.pdf", ""),
        (make_encrypted_pdf("Payroll", user_password="s3cret"), "locked.pdf", "encrypted with a password"),
    ],
    ids=["empty", "corrupt-pdf", "encrypted-pdf"],
)
def test_a_bad_document_fails_with_a_reason_and_the_others_are_untouched(
    collection: Collection, content: bytes, filename: str, reason: str
) -> None:
    good = add_document(collection, "Healthy content.")
    document_ingest(document_id=good.pk)
    bad = services.document_submit(collection=collection, content=content, filename=filename, enqueue=False).document
    assert document_ingest(document_id=bad.pk) == "failed"
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == Document.Status.FAILED and bad.error
    assert reason in bad.error
    assert good.status == Document.Status.READY and good.chunks.count() == 1


def test_binary_bytes_with_a_text_extension_are_refused(collection: Collection) -> None:
    with pytest.raises(services.UnsupportedDocument):
        services.document_submit(collection=collection, content=b"\x00\x01\x02binary", filename="a.txt", enqueue=False)
    assert not Document.objects.exists()


def test_deleting_a_document_removes_its_chunks_index_rows_and_file(
    collection: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    document = add_document(collection, "Ephemeral words.")
    document_ingest(document_id=document.pk)
    path = Path(document.file.path)
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        services.document_delete(document=document)
    assert not Chunk.objects.exists()
    assert not path.exists()
    assert not PostingBlock.objects.exists()
    assert not Term.objects.exists()
    assert Collection.objects.values_list("keyword_chunks", "keyword_terms").get(pk=collection.pk) == (0, 0)


def test_deleting_the_tenant_removes_its_documents_files_and_keyword_index_rows(
    collection: Collection, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    from aihub.access.services import tenant_delete

    other = CollectionFactory.create()
    for target, text in ((collection, "Tenant secrets about zeppelins."), (other, "Public notes about zeppelins.")):
        document_ingest(document_id=add_document(target, text).pk)
    kept = Document.objects.get(collection=other)
    media = Path(settings.MEDIA_ROOT)

    with django_capture_on_commit_callbacks(execute=True):
        tenant_delete(tenant=collection.tenant)
    assert [p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()] == [kept.file.name]
    assert list(Chunk.objects.values_list("text", flat=True)) == ["Public notes about zeppelins."]
    assert set(Term.objects.values_list("collection", flat=True)) == {other.pk}
    assert {chunk for _, chunk, _ in indexed_postings()} == set(
        Chunk.objects.filter(document=kept).values_list("id", flat=True)
    )
    hits = search(collections=[other], query="zeppelins", mode="keyword", top_k=5)
    assert [hit.text for hit in hits] == ["Public notes about zeppelins."]


def test_the_task_enqueued_after_commit_ingests(
    collection: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    from knowledge import tasks

    drain_sent_tasks("knowledge.ingest_document")
    with django_capture_on_commit_callbacks(execute=True):
        submitted = services.document_submit(collection=collection, content=b"Queued text.", filename="q.txt")
    sent = drain_sent_tasks("knowledge.ingest_document")
    assert sent == [str(submitted.document.pk)]
    assert tasks.ingest_document(sent[0]) == "ready"
    assert tasks.ingest_document(sent[0]) == "not claimed"  # idempotent


# --- Many documents together -------------------------------------------------------------------------------------


def _paragraphs(word: str, count: int) -> str:
    # Paragraphs of about 20 tokens: two fit in a chunk of the fixture's collection (64 tokens) but not three.
    return "\n\n".join(f"{word.title()} paragraph {n}: " + " ".join([word] * 18) + "." for n in range(count))


@pytest.fixture
def embedded(minilm: Embedder, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of every call to the model, in order."""
    calls: list[list[str]] = []
    real = minilm.embed

    def spy(texts: list[str]) -> Any:
        calls.append(list(texts))
        return real(texts)

    monkeypatch.setattr(minilm, "embed", spy)
    return calls


def test_the_chunks_of_many_documents_fill_full_batches_and_each_gets_its_own_vectors(
    collection: Collection, embedded: list[list[str]], minilm: Embedder, settings: Any
) -> None:
    settings.KNOWLEDGE_EMBED_BATCH_SIZE = 4
    texts = [_paragraphs(word, count) for word, count in (("apple", 1), ("pear", 6), ("plum", 2), ("fig", 3))]
    documents = [add_document(collection, text, filename=f"{n}.txt") for n, text in enumerate(texts)]
    results = documents_ingest(document_ids=[d.pk for d in documents])

    assert sorted(r.document_id for r in results) == sorted(d.pk for d in documents)
    assert {r.outcome for r in results} == {"ready"}
    chunks = list(Chunk.objects.filter(collection=collection).order_by("document__created_at", "position"))
    assert sum(r.chunks for r in results) == len(chunks) > 4
    # Full batches across documents (one document's chunks span two of them), only the last one partial.
    assert [len(call) for call in embedded[:-1]] == [4] * (len(embedded) - 1) and 0 < len(embedded[-1]) <= 4
    assert [t for call in embedded for t in call] == [c.text for c in chunks]
    for chunk in chunks:
        assert chunk.embedding == pytest.approx(minilm.embed([chunk.text])[0], abs=1e-6)
    for document in documents:
        document.refresh_from_db()
        assert document.status == Document.Status.READY
        assert document.chunk_count == Chunk.objects.filter(document=document).count()
        assert [c.position for c in Chunk.objects.filter(document=document)] == list(range(document.chunk_count))


def test_the_model_embeds_a_batch_while_the_next_documents_are_prepared(
    collection: Collection, minilm: Embedder, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.KNOWLEDGE_EMBED_BATCH_SIZE = 1
    real = minilm.embed
    release, started = threading.Event(), threading.Event()
    threads: set[str] = set()

    def slow_model(texts: list[str]) -> Any:
        threads.add(threading.current_thread().name)
        started.set()
        assert release.wait(timeout=30)
        return real(texts)

    monkeypatch.setattr(minilm, "embed", slow_model)
    first, second = add_document(collection, "First document."), add_document(collection, "Second document.")
    with Ingestion() as ingestion:
        assert ingestion.add(first.pk) == []  # handed to the model; not waited for
        assert started.wait(timeout=30)
        assert ingestion.add(second.pk) == []  # claimed and chunked while the model is still busy
        assert ingestion.in_flight == [first.pk, second.pk]
        second.refresh_from_db()
        assert second.status == Document.Status.PROCESSING
        release.set()
        assert [(r.document_id, r.outcome) for r in ingestion.finish()] == [(first.pk, "ready"), (second.pk, "ready")]
        assert ingestion.in_flight == []
    assert threading.current_thread().name not in threads


def test_a_model_failure_in_a_shared_batch_fails_only_the_document_it_is_about(
    collection: Collection, minilm: Embedder, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    real = minilm.embed

    def refuses_poison(texts: list[str]) -> Any:
        if any("poison" in text for text in texts):
            raise EmbeddingError("The embeddings provider failed: poison")
        return real(texts)

    monkeypatch.setattr(minilm, "embed", refuses_poison)
    good = add_document(collection, "Healthy apples.")
    bad = add_document(collection, "Some poison here.", filename="bad.txt")
    other = add_document(collection, "Healthy pears.", filename="other.txt")
    results = {r.document_id: r for r in documents_ingest(document_ids=[good.pk, bad.pk, other.pk])}

    assert results[bad.pk].outcome == "failed" and "poison" in results[bad.pk].error
    assert results[good.pk].outcome == results[other.pk].outcome == "ready"
    bad.refresh_from_db()
    assert bad.status == Document.Status.FAILED and "poison" in bad.error and not bad.chunks.exists()
    assert Chunk.objects.filter(document__in=[good, other]).count() == 2


def test_in_one_ingestion_a_bad_a_taken_and_a_superseded_document_leave_the_others_alone(
    collection: Collection,
) -> None:
    good = add_document(collection, "Good words.")
    empty = add_document(collection, "   ", filename="empty.txt")
    taken = add_document(collection, "Someone else has it.", filename="taken.txt")
    assert document_claim(document_id=taken.pk) is not None
    changing = add_document(collection, "Version one.", filename="v.txt", source="v")
    with Ingestion() as ingestion:
        early = ingestion.add(good.pk) + ingestion.add(empty.pk) + ingestion.add(taken.pk) + ingestion.add(changing.pk)
        assert [(r.document_id, r.outcome) for r in early] == [(empty.pk, "failed"), (taken.pk, "not claimed")]
        assert "no text" in early[0].error
        services.document_submit(collection=collection, content=b"Version two.", filename="v.txt", source="v")
        late = {r.document_id: r.outcome for r in ingestion.finish()}
    assert late == {good.pk: "ready", changing.pk: "superseded"}
    assert Chunk.objects.get(document=good).text == "Good words."
    assert not Chunk.objects.filter(document=changing).exists()  # pending again, for its new bytes
    assert document_ingest(document_id=changing.pk) == "ready"
    assert Chunk.objects.get(document=changing).text == "Version two."


def test_files_given_up_part_way_leave_no_document_half_ingested(collection: Collection, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Kept only if it was finished.")
    (tmp_path / "b.txt").write_bytes(b"\x00\x01\x02 binary")
    (tmp_path / "c.txt").write_text("Never submitted.")
    results = files_ingest(collection=collection, paths=sorted(tmp_path.iterdir()), metadata={}, queue=False)
    path, first = next(results)
    assert path.name == "b.txt" and first.outcome == "failed"  # a.txt is still waiting for a full batch
    results.close()  # as Ctrl-C in the caller does
    assert not Document.objects.exists()


def test_a_time_limit_part_way_fails_the_documents_not_stored_yet_with_the_reason(
    collection: Collection, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    settings.KNOWLEDGE_EMBED_BATCH_SIZE = 1
    real = services.document_chunks_replace
    calls = {"n": 0}

    def out_of_time_on_the_second(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise SoftTimeLimitExceeded
        return real(**kwargs)

    monkeypatch.setattr(services, "document_chunks_replace", out_of_time_on_the_second)
    documents = [add_document(collection, f"Document number {n}.", filename=f"{n}.txt") for n in range(3)]
    results = {r.document_id: r for r in documents_ingest(document_ids=[d.pk for d in documents])}
    assert [results[d.pk].outcome for d in documents] == ["ready", "failed", "failed"]
    assert results[documents[1].pk].error == "Unexpected error: SoftTimeLimitExceeded"
    statuses = dict(Document.objects.values_list("pk", "status"))
    assert [statuses[d.pk] for d in documents] == ["ready", "failed", "failed"]
