"""Ingesting documents: claim each, extract, chunk, embed in batches, then swap its chunks atomically.

Idempotent: a document is claimed with a conditional update (``pending → processing``, or ``processing`` left
behind by a worker that died), so a second claimer gets nothing; the result is stored only if the document
still has the bytes that were claimed. Any failure marks this document ``failed`` with a reason and touches
no other document.

Many documents go through one ``Ingestion`` at the model's speed: the chunks of consecutive documents fill full
batches of ``KNOWLEDGE_EMBED_BATCH_SIZE`` (a short document no longer makes a batch of two), the model embeds a
batch on its own thread (torch releases the GIL) while this thread claims, extracts and chunks the next
documents and stores the ones whose vectors are all back, one transaction per document as before.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from aihub.extraction import ExtractionError, extract_text
from knowledge import services
from knowledge.chunking import TextChunk, chunk_text
from knowledge.embedders import Embedder, EmbeddingError, get_embedder
from knowledge.models import Collection, Document

logger = logging.getLogger(__name__)

# Batches handed to the model thread and not yet collected: one being embedded, one waiting, so the model never
# waits for this thread, and this thread never runs more than a batch ahead.
BATCHES_IN_FLIGHT = 2
# The failures that are the document's (or the provider's) and get its reason; anything else is logged.
_EXPECTED = (ExtractionError, EmbeddingError, ValueError, OSError)


def document_claim(*, document_id: uuid.UUID) -> Document | None:
    """Take the document for ingestion, or None when someone else has it (or it needs none)."""
    stale = timezone.now() - timedelta(seconds=settings.KNOWLEDGE_INGEST_TIME_LIMIT_SECONDS)
    claimable = Q(status=Document.Status.PENDING) | Q(status=Document.Status.PROCESSING, updated_at__lt=stale)
    claimed = Document.objects.filter(claimable, pk=document_id).update(
        status=Document.Status.PROCESSING, error="", updated_at=timezone.now()
    )
    if not claimed:
        return None
    return Document.objects.select_related("collection").get(pk=document_id)


def embed_in_batches(texts: list[str], *, embedder_name: str) -> Any:
    import numpy as np

    embedder = get_embedder(embedder_name)
    size = max(1, settings.KNOWLEDGE_EMBED_BATCH_SIZE)
    parts = [embedder.embed(texts[i : i + size]) for i in range(0, len(texts), size)]
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def document_chunks(document: Document, content: bytes, collection: Collection) -> list[TextChunk]:
    """Extract and chunk. Raises ExtractionError or ValueError with a reason for a person."""
    extracted = extract_text(content, document.media_type)
    if not extracted.text.strip():
        raise ValueError("The document has no text (a scanned PDF needs OCR first).")
    embedder = get_embedder(collection.embedder)
    size = min(collection.chunk_size, embedder.max_tokens)
    pieces = chunk_text(extracted, size=size, overlap=collection.chunk_overlap, count_tokens=embedder.count_tokens)
    if not pieces:
        raise ValueError("The document has no text to index.")
    return pieces


def chunk_rows(pieces: list[TextChunk], vectors: Any) -> list[dict[str, Any]]:
    """The rows ``services.document_chunks_replace`` stores: each chunk with its vector."""
    return [
        {
            "text": p.text,
            "token_count": p.token_count,
            "page": p.page,
            "heading_path": p.heading_path,
            "start": p.start,
            "end": p.end,
            "embedding": vectors[i],
        }
        for i, p in enumerate(pieces)
    ]


Outcome = Literal["ready", "failed", "superseded", "not claimed"]


@dataclass(frozen=True)
class Ingested:
    """What became of one document: ready (with its chunk count), failed (with the reason), superseded (its
    bytes changed meanwhile, a newer ingestion owns it) or not claimed (someone else has it, or it needs none)."""

    document_id: uuid.UUID
    outcome: Outcome
    chunks: int = 0
    error: str = ""


@dataclass(eq=False)
class _Claimed:
    document: Document
    sha256: str
    pieces: list[TextChunk]
    vectors: list[Any] = field(default_factory=list)
    missing: int = 0
    done: bool = False


def _failure_reason(document: Document, exc: BaseException) -> str:
    if isinstance(exc, _EXPECTED):
        return str(exc) or type(exc).__name__
    logger.error("ingesting document %s failed", document.pk, exc_info=exc)
    return f"Unexpected error: {type(exc).__name__}"


class Ingestion:
    """Documents ingested together, their chunks embedded in full batches on a model thread.

    ``add`` claims and prepares a document and returns the documents finished meanwhile; ``finish`` embeds what
    is left and returns the rest. Use it as a context manager: leaving it stops the model thread. A document
    added and not yet returned is ``processing``: a caller interrupted part-way abandons those
    (``in_flight``); one left behind by a crash is claimed again after ``KNOWLEDGE_INGEST_TIME_LIMIT_SECONDS``.
    """

    def __init__(self) -> None:
        self._batch_size = max(1, settings.KNOWLEDGE_EMBED_BATCH_SIZE)
        self._embedders: dict[str, Embedder] = {}
        # Per embedder, the (document, chunk index) pairs waiting for a batch.
        self._waiting: dict[str, list[tuple[_Claimed, int]]] = {}
        self._batches: deque[tuple[list[tuple[_Claimed, int]], Future[Any]]] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._claimed: dict[uuid.UUID, _Claimed] = {}
        # Finished and not returned yet: kept here, so what finished before a failure part-way is still told.
        self._finished: list[Ingested] = []

    def __enter__(self) -> Ingestion:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @property
    def in_flight(self) -> list[uuid.UUID]:
        """The documents claimed by this ingestion and not returned yet."""
        return list(self._claimed)

    def add(self, document_id: uuid.UUID) -> list[Ingested]:
        document = document_claim(document_id=document_id)
        if document is None:
            return self._take([Ingested(document_id, "not claimed")])
        try:
            with document.file.open("rb") as handle:
                content = handle.read()
            pieces = document_chunks(document, content, document.collection)
            embedder = self._embedder(document.collection.embedder)
        except Exception as exc:
            return self._take([self._fail(document, document.sha256, exc)])
        claimed = _Claimed(document, document.sha256, pieces, [None] * len(pieces), len(pieces))
        self._claimed[document.pk] = claimed
        waiting = self._waiting.setdefault(embedder.name, [])
        waiting.extend((claimed, i) for i in range(len(pieces)))
        while len(waiting) >= self._batch_size:
            batch, waiting[:] = waiting[: self._batch_size], waiting[self._batch_size :]
            self._send(embedder, batch)
        while self._batches and self._batches[0][1].done():
            self._collect()
        return self._take()

    def finish(self) -> list[Ingested]:
        """Embed the last, partial batches and store every document still in flight."""
        for name, waiting in self._waiting.items():
            if waiting:
                batch, waiting[:] = list(waiting), []
                self._send(self._embedders[name], batch)
        while self._batches:
            self._collect()
        return self._take()

    def _take(self, more: list[Ingested] | None = None) -> list[Ingested]:
        self._finished += more or []
        taken, self._finished = self._finished, []
        return taken

    def _embedder(self, name: str) -> Embedder:
        if name not in self._embedders:
            self._embedders[name] = get_embedder(name)
        return self._embedders[name]

    def _send(self, embedder: Embedder, batch: list[tuple[_Claimed, int]]) -> None:
        while len(self._batches) >= BATCHES_IN_FLIGHT:
            self._collect()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="knowledge-embed")
        texts = [claimed.pieces[i].text for claimed, i in batch]
        self._batches.append((batch, self._executor.submit(embedder.embed, texts)))

    def _collect(self) -> None:
        """Wait for the oldest batch, hand out its vectors, and store the documents it completes."""
        batch, future = self._batches.popleft()
        try:
            vectors = future.result()
            if len(vectors) != len(batch):
                raise EmbeddingError(f"The embedder returned {len(vectors)} vectors for {len(batch)} texts.")
        except Exception:
            if not future.done():
                raise  # not the model's failure: this thread was interrupted while waiting (a time limit)
            # A batch mixes documents: each is embedded again alone, so a failure is only its own.
            for claimed in dict.fromkeys(c for c, _ in batch):
                if not claimed.done:
                    self._finished.append(self._embed_alone(claimed))
            return
        for (claimed, i), vector in zip(batch, vectors, strict=True):
            if claimed.done:
                continue
            claimed.vectors[i] = vector
            claimed.missing -= 1
            if not claimed.missing:
                self._finished.append(self._store(claimed, int(vector.shape[0])))

    def _embed_alone(self, claimed: _Claimed) -> Ingested:
        texts = [p.text for p in claimed.pieces]
        assert self._executor is not None  # a batch was sent
        try:
            # On the model's thread too: one model call at a time.
            vectors = self._executor.submit(embed_in_batches, texts, embedder_name=claimed.document.collection.embedder)
            vectors = vectors.result()
        except Exception as exc:
            claimed.done = True
            self._claimed.pop(claimed.document.pk, None)
            return self._fail(claimed.document, claimed.sha256, exc)
        claimed.vectors = list(vectors)
        return self._store(claimed, int(vectors.shape[1]))

    def _store(self, claimed: _Claimed, dimensions: int) -> Ingested:
        claimed.done = True
        document = claimed.document
        stored = services.document_chunks_replace(
            document_id=document.pk,
            sha256=claimed.sha256,
            chunks=chunk_rows(claimed.pieces, claimed.vectors),
            dimensions=dimensions,
        )
        self._claimed.pop(document.pk, None)
        if stored is None:
            return Ingested(document.pk, "superseded")
        return Ingested(document.pk, "ready", chunks=len(claimed.pieces))

    def fail_in_flight(self, exc: BaseException) -> list[Ingested]:
        """Mark every document still in flight failed, for ``exc`` (what stopped the ingestion); returns them
        after those that finished before it and were not returned yet."""
        self.close()
        failed = [self._fail(c.document, c.sha256, exc) for c in self._claimed.values()]
        self._claimed.clear()
        return self._take(failed)

    def _fail(self, document: Document, sha256: str, exc: BaseException) -> Ingested:
        reason = _failure_reason(document, exc)
        services.document_fail(document_id=document.pk, sha256=sha256, reason=reason)
        return Ingested(document.pk, "failed", error=reason)


def documents_ingest(*, document_ids: list[uuid.UUID]) -> list[Ingested]:
    """Ingest the documents that are waiting, their chunks embedded together in full batches."""
    results: list[Ingested] = []
    with Ingestion() as ingestion:
        try:
            for document_id in document_ids:
                results += ingestion.add(document_id)
            return results + ingestion.finish()
        except Exception as exc:
            # Say a time limit: the documents not stored yet fail with the reason, as one alone would.
            return results + ingestion.fail_in_flight(exc)


def document_ingest(*, document_id: uuid.UUID) -> str:
    """Ingest the document if it is waiting; returns what happened: ready, failed, superseded, not claimed."""
    return documents_ingest(document_ids=[document_id])[0].outcome


@dataclass(frozen=True)
class FileIngested:
    """What became of one file: its outcome, the chunks it now has, and the reason when it failed."""

    outcome: Literal["added", "unchanged", "replaced", "failed"]
    chunks: int = 0
    error: str = ""


def _file_submit(
    collection: Collection, path: Path, metadata: dict[str, Any], queue: bool
) -> FileIngested | services.Submitted:
    """The file submitted like an upload (its path the source), or what became of it when there is no more to do."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        return FileIngested("failed", error=f"cannot read it ({exc.strerror or exc})")
    try:
        submitted = services.document_submit(
            collection=collection,
            content=content,
            filename=path.name,
            source=str(path),
            metadata=metadata,
            enqueue=queue,
        )
    except (services.UnsupportedDocument, services.DocumentTooLarge) as exc:
        return FileIngested("failed", error=str(exc))
    if submitted.outcome == "unchanged" or queue:
        return FileIngested(submitted.outcome)
    return submitted


def files_ingest(
    *, collection: Collection, paths: Iterable[Path], metadata: dict[str, Any], queue: bool
) -> Generator[tuple[Path, FileIngested]]:
    """Submit files from disk like uploads and, unless ``queue``, ingest them here together (an ``Ingestion``):
    yields each file with what became of it, in the order they finish.

    Interrupted (Ctrl-C, or the caller closing the generator early), every document submitted and not finished
    is abandoned (removed if this run added it, marked failed if it replaced one; kept if it became ready) and
    the interrupt goes on: nothing is left half-ingested.
    """
    # The documents submitted and not finished: their file and whether this run added them.
    submitted: dict[uuid.UUID, tuple[Path, Literal["added", "replaced"]]] = {}

    def finished(result: Ingested) -> tuple[Path, FileIngested]:
        path, outcome = submitted.pop(result.document_id)
        if result.outcome == "failed":
            return path, FileIngested("failed", error=result.error)
        return path, FileIngested(outcome, chunks=result.chunks)

    with Ingestion() as ingestion:
        try:
            for path in paths:
                submission = _file_submit(collection, path, metadata, queue)
                if isinstance(submission, FileIngested):
                    yield path, submission
                    continue
                document_id = submission.document.pk
                submitted[document_id] = (path, "added" if submission.outcome == "added" else "replaced")
                for result in ingestion.add(document_id):
                    yield finished(result)
            for result in ingestion.finish():
                yield finished(result)
        except BaseException:
            ingestion.close()
            for document_id, (_, outcome) in submitted.items():
                services.document_abandon(document_id=document_id, added=outcome == "added")
            raise
