"""Knowledge at scale: ingest throughput on a generated corpus, and search latency at 100,000 chunks on pgvector.

Run from the repository root with a PostgreSQL that has pgvector (``scripts/pgserver.py start DIR PORT``):

    .venv/bin/python bench/knowledge_scale.py --postgres postgres://postgres@127.0.0.1:54329

It creates the database ``aihub_bench_scale`` on that server (dropped afterwards), migrates it, and measures:

1. **ingest**: ``--documents`` generated text documents (default 2,000 of about ``--words`` words each, made from a
   seeded random sentence generator over a fixed vocabulary, so about ten 200-token chunks each), each submitted
   and ingested inline through the real pipeline (sniff, extract, chunk, embed, store, index), the model loaded
   before the clock starts. It prints documents/s and chunks/s end to end, next to the raw throughput of the same
   model embedding the same chunk texts in batches of ``KNOWLEDGE_EMBED_BATCH_SIZE`` (the limit; ``--raw-sample``
   of them), and the ratio.
2. **search at scale**: the collection is filled up to ``--chunks`` (default 100,000) chunk rows inserted directly
   (bulk insert, no pipeline). Their vectors are NOT model embeddings: each is a normalised mix of two real
   chunk embeddings from step 1 plus Gaussian noise (``--noise``), so they lie near the real data's distribution
   rather than uniform on the sphere; their texts are generated sentences. ``--queries`` generated sentences
   (real model embeddings, excluded from the timings) are searched for the top 10 with pgvector's HNSW index
   (``hnsw.ef_search`` = ``KNOWLEDGE_HNSW_EF_SEARCH``) and with an exact scan, through ``knowledge.index``; it prints
   p50/p95 of each, and the recall@10 of HNSW against exact. The search service's keyword, vector and hybrid
   modes are timed over the same queries too (query embedding excluded).

Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE = "aihub_bench_scale"

# A fixed vocabulary: common English function words plus domain words, so full text has something to match.
FUNCTION_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "with",
    "as",
    "on",
    "by",
    "was",
    "from",
    "at",
    "this",
    "which",
    "be",
    "are",
    "an",
    "or",
    "were",
]
DOMAIN_WORDS = [
    "protein",
    "cell",
    "gene",
    "signal",
    "pathway",
    "receptor",
    "kinase",
    "membrane",
    "patient",
    "trial",
    "dose",
    "therapy",
    "tumour",
    "immune",
    "response",
    "network",
    "model",
    "training",
    "layer",
    "gradient",
    "dataset",
    "accuracy",
    "benchmark",
    "latency",
    "throughput",
    "cache",
    "index",
    "query",
    "vector",
    "storage",
    "replica",
    "cluster",
    "shard",
    "consensus",
    "failure",
    "recovery",
    "policy",
    "tenant",
    "agent",
    "message",
    "thread",
    "stream",
    "event",
    "climate",
    "ocean",
    "carbon",
    "emission",
    "forest",
    "soil",
    "water",
    "river",
    "glacier",
    "sediment",
    "species",
    "habitat",
    "population",
    "growth",
    "market",
    "price",
    "demand",
    "supply",
    "inflation",
    "interest",
    "credit",
    "risk",
    "portfolio",
    "asset",
    "contract",
    "regulation",
    "audit",
    "report",
    "engine",
    "turbine",
    "pressure",
    "temperature",
    "sensor",
    "valve",
    "pump",
    "circuit",
    "voltage",
    "current",
    "battery",
    "charge",
    "motor",
    "control",
]


def configure(var_dir: Path, postgres: str) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "aihub.settings",
            "AIHUB_VAR_DIR": str(var_dir),
            "DJANGO_MEDIA_ROOT": str(var_dir / "media"),
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "AIHUB_LOG_LEVEL": "WARNING",
            "DJANGO_STATIC_ROOT": str(var_dir / "static"),
            "DATABASE_URL": f"{postgres.rstrip('/')}/{BENCH_DATABASE}",
        }
    )
    (var_dir / "static").mkdir(exist_ok=True)
    sys.path.insert(0, str(REPO_ROOT))


def recreate_database(server: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(DOMAIN_WORDS if rng.random() < 0.55 else FUNCTION_WORDS) for _ in range(rng.randint(8, 20))]
    return " ".join(words).capitalize() + "."


def document_text(rng: random.Random, words: int) -> str:
    paragraphs, count = [], 0
    while count < words:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(paragraph)
        count += len(paragraph.split())
    return "\n\n".join(paragraphs)


def ingest(collection: Any, rng: random.Random, documents: int, words: int, raw_sample: int) -> dict[str, float]:
    from knowledge import services
    from knowledge.embedders import get_embedder
    from knowledge.models import Chunk
    from knowledge.pipeline import document_ingest, embed_in_batches

    texts = [document_text(rng, words) for _ in range(documents)]
    get_embedder(collection.embedder).embed(["load the model before the clock starts"])
    started = time.perf_counter()
    for number, text in enumerate(texts, start=1):
        submitted = services.document_submit(
            collection=collection,
            content=text.encode(),
            filename=f"doc-{number}.txt",
            title=f"Generated document {number}",
            source=f"generated/{number}",
            enqueue=False,
        )
        result = document_ingest(document_id=submitted.document.pk)
        if result != "ready":
            print(f"  document {number}: {result}", file=sys.stderr)
        if number % 200 == 0:
            print(f"  ingested {number}/{documents} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    seconds = time.perf_counter() - started
    chunk_texts = list(Chunk.objects.filter(collection=collection).order_by("id").values_list("text", flat=True))
    sample = chunk_texts[:raw_sample] if raw_sample else chunk_texts
    raw_started = time.perf_counter()
    embed_in_batches(sample, embedder_name=collection.embedder)
    raw_seconds = time.perf_counter() - raw_started
    return {
        "documents": documents,
        "chunks": len(chunk_texts),
        "seconds": seconds,
        "docs_per_s": documents / seconds,
        "chunks_per_s": len(chunk_texts) / seconds,
        "raw_sample": len(sample),
        "raw_embed_chunks_per_s": len(sample) / raw_seconds,
    }


def fill(collection: Any, rng: random.Random, target: int, noise: float) -> dict[str, float]:
    """Bulk-insert chunk rows up to ``target`` with derived vectors (see the module docstring)."""
    import numpy as np

    from knowledge.models import Chunk, Document

    real = np.vstack(list(Chunk.objects.filter(collection=collection).values_list("embedding", flat=True)))
    existing = len(real)
    missing = max(0, target - existing)
    if not missing:
        return {"inserted": 0, "seconds": 0.0, "total": float(existing)}
    np_rng = np.random.default_rng(rng.randrange(2**32))
    document = Document.objects.create(
        collection=collection,
        title="Filler",
        source="generated/filler",
        media_type="text/plain",
        sha256="0" * 64,
        status="ready",
        chunk_count=missing,
    )
    started = time.perf_counter()
    batch = 2000
    for offset in range(0, missing, batch):
        size = min(batch, missing - offset)
        a = real[np_rng.integers(0, existing, size)]
        b = real[np_rng.integers(0, existing, size)]
        weight = np_rng.uniform(0.0, 1.0, (size, 1))
        vectors = weight * a + (1 - weight) * b + np_rng.normal(0.0, noise, a.shape)
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        rows = []
        for i in range(size):
            text = sentence(rng)
            rows.append(
                Chunk(
                    document=document,
                    collection=collection,
                    position=offset + i,
                    text=text,
                    token_count=len(text.split()),
                    start=0,
                    end=len(text),
                    dimensions=vectors.shape[1],
                    embedding=vectors[i],
                )
            )
        Chunk.objects.bulk_create(rows)
        print(f"  inserted {offset + size}/{missing} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    seconds = time.perf_counter() - started
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    return {"inserted": float(missing), "seconds": seconds, "total": float(existing + missing)}


def latency(collection: Any, rng: random.Random, queries: int) -> dict[str, dict[str, float]]:
    import numpy as np

    from knowledge import index
    from knowledge.embedders import get_embedder
    from knowledge.search import search

    texts = [sentence(rng) for _ in range(queries)]
    embedder = get_embedder(collection.embedder)
    vectors = embedder.embed(texts)
    results: dict[str, dict[str, float]] = {}
    hnsw_times, exact_times, overlaps = [], [], []
    for vector in vectors[:3]:  # warm the buffers and the index pages
        index.vector_search(collections=[collection], vector=vector, limit=10)
        index.vector_search(collections=[collection], vector=vector, limit=10, exact=True)
    for vector in vectors:
        started = time.perf_counter()
        approx = index.vector_search(collections=[collection], vector=vector, limit=10)
        hnsw_times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        exact = index.vector_search(collections=[collection], vector=vector, limit=10, exact=True)
        exact_times.append((time.perf_counter() - started) * 1000)
        wanted = {s.chunk_id for s in exact}
        overlaps.append(len({s.chunk_id for s in approx} & wanted) / max(1, len(wanted)))
    results["pgvector HNSW (index.vector_search)"] = {
        "p50_ms": percentile(hnsw_times, 0.5),
        "p95_ms": percentile(hnsw_times, 0.95),
    }
    results["pgvector exact scan (exact=True)"] = {
        "p50_ms": percentile(exact_times, 0.5),
        "p95_ms": percentile(exact_times, 0.95),
    }
    results["HNSW recall@10 vs exact"] = {"value": statistics.fmean(overlaps)}

    # The search service end to end, with the query embedding taken out (the same cost for every mode).
    cache = {text: vectors[i] for i, text in enumerate(texts)}
    original = embedder.embed

    def remembered(batch: list[str]) -> Any:
        return np.vstack([cache[t] if t in cache else original([t])[0] for t in batch])

    setattr(embedder, "embed", remembered)  # noqa: B010 - the Protocol's method, swapped for the run
    try:
        for mode in ("keyword", "vector", "hybrid"):
            search(collections=[collection], query=texts[0], mode=mode, top_k=10)
            times = []
            for text in texts:
                started = time.perf_counter()
                search(collections=[collection], query=text, mode=mode, top_k=10)
                times.append((time.perf_counter() - started) * 1000)
            results[f"service {mode}, top 10"] = {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95)}
    finally:
        setattr(embedder, "embed", original)  # noqa: B010
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:54329", help="Server URL, pgvector.")
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--words", type=int, default=1100, help="Words per generated document (about 10 chunks).")
    parser.add_argument("--raw-sample", type=int, default=2000, help="Chunks the raw throughput is measured on.")
    parser.add_argument("--chunks", type=int, default=100_000, help="Chunks in the collection for the latency part.")
    parser.add_argument("--noise", type=float, default=0.02, help="Per-dimension noise of the derived vectors.")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="aihub-bench-scale-") as folder:
        configure(Path(folder), args.postgres)
        recreate_database(args.postgres)
        try:
            import django

            django.setup()
            from django.conf import settings
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            from aihub.access.services import tenant_create
            from knowledge.services import collection_create

            tenant = tenant_create(slug="bench", name="Bench")
            collection = collection_create(tenant=tenant, slug="generated")
            print(
                f"PostgreSQL + pgvector; {collection.embedder}, {collection.chunk_size} tokens per chunk, "
                f"{collection.chunk_overlap} overlap; embed batch {settings.KNOWLEDGE_EMBED_BATCH_SIZE}"
            )
            ingested = ingest(collection, rng, args.documents, args.words, args.raw_sample)
            print(
                f"\ningest: {ingested['documents']} generated documents, {ingested['chunks']} chunks "
                f"in {ingested['seconds']:.1f}s: {ingested['docs_per_s']:.2f} docs/s, "
                f"{ingested['chunks_per_s']:.1f} chunks/s end to end; raw embedding of "
                f"{ingested['raw_sample']} of the same chunks {ingested['raw_embed_chunks_per_s']:.1f} chunks/s; "
                f"ratio {ingested['chunks_per_s'] / ingested['raw_embed_chunks_per_s']:.2f}"
            )
            filled = fill(collection, rng, args.chunks, args.noise)
            print(
                f"\nfilled to {int(filled['total'])} chunks: {int(filled['inserted'])} rows with derived vectors "
                f"bulk-inserted in {filled['seconds']:.1f}s (HNSW and GIN indexes maintained on insert)"
            )
            timings = latency(collection, rng, args.queries)
            print(
                f"\nlatency over {int(filled['total'])} chunks, {args.queries} generated queries, top 10, "
                f"query embedding excluded, hnsw.ef_search={settings.KNOWLEDGE_HNSW_EF_SEARCH}:"
            )
            print("| path | p50 ms | p95 ms |")
            print("|---|---:|---:|")
            for name, row in timings.items():
                if "p50_ms" in row:
                    print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} |")
                else:
                    print(f"| {name} | {row['value']:.3f} | |")
            if args.json:
                args.json.write_text(json.dumps({"ingest": ingested, "fill": filled, "latency": timings}, indent=2))
        finally:
            from django.db import connections

            connections.close_all()
            recreate_database(args.postgres, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
