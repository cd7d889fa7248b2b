from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from knowledge import services
from knowledge.embedders import Embedder
from knowledge.models import Chunk, Collection, Document, Posting, Term
from knowledge.pipeline import document_claim, document_ingest
from knowledge.search import search
from tests.helpers import drain_sent_tasks
from tests.knowledge.factories import CollectionFactory, add_document
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
    assert not Posting.objects.exists()
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
    assert set(Posting.objects.values_list("chunk__document", flat=True)) == {kept.pk}
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
