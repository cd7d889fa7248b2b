"""Knowledge at scale: ingest throughput on a generated corpus, and search latency at 100,000 chunks.

Run from the repository root, on the embedded SQLite (a temporary folder) or on a PostgreSQL that has pgvector
(``scripts/pgserver.py start DIR PORT``):

    .venv/bin/python bench/knowledge_scale.py
    .venv/bin/python bench/knowledge_scale.py --postgres postgres://postgres@127.0.0.1:54329

On PostgreSQL it creates the database ``aihub_bench_scale`` (``--database``) on that server (dropped afterwards),
migrates it, and measures:

1. **ingest**: ``--documents`` generated text documents (default 2,000 of about ``--words`` words each, made from a
   seeded random sentence generator over a fixed vocabulary, so about ten 200-token chunks each), each submitted
   and ingested inline through the real pipeline as ``manage.py ingest`` does (``knowledge.pipeline.Ingestion``:
   sniff, extract, chunk, embed in full batches across documents on the model's thread, store, index), the model
   loaded before the clock starts. It prints documents/s and chunks/s end to end, next to the raw throughput of the
   same model embedding the same chunk texts in batches of ``KNOWLEDGE_EMBED_BATCH_SIZE`` (the limit;
   ``--raw-sample`` of them), and the ratio.
2. **search at scale**: the collection is filled up to ``--chunks`` (default 100,000) chunk rows inserted directly
   (bulk insert, the vector and keyword indexes maintained as rows arrive). They are real text with real
   embeddings: pieces of one, two and three sentences cut from the BEIR SciFact abstracts (read in place from
   ``../shared/data/scifact``, ``--data`` elsewhere) in their own seeded order, embedded by the collection's model
   (about forty minutes of CPU for 80,000 pieces, once: the vectors of the order's first pieces are kept in
   ``var/bench-cache``, and ``--embed-only PIECES`` fills that cache ahead of a timed run). The first ``--queries``
   SciFact queries (real questions; their embedding excluded from the timings) are searched for the top 10, each
   path beside the exact baseline measured in the same run: vector search against an exact scan (pgvector without
   its index; on SQLite the NumPy matrix index is itself exact), with HNSW's recall@10 against it on PostgreSQL and
   NumPy's top 10 over the same vectors in memory as the floor; the keyword index (``knowledge.keywords``) against
   bm25s, exact BM25 over the same chunks' terms as a sparse matrix in memory (the peer), with the share of
   queries whose top-10 scores are bm25s's; and the search service's keyword, vector and hybrid modes end to end.

``--chunks 0`` stops after the ingest; ``--profile FILE`` writes a cProfile of the ingest (``python -m pstats
FILE``). Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO_ROOT, configure_django, percentile, recreate_database

BENCH_DATABASE = "aihub_bench_scale"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")

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


def ingest(
    collection: Any, rng: random.Random, documents: int, words: int, raw_sample: int, profile: Path | None = None
) -> dict[str, float]:
    from knowledge import services
    from knowledge.embedders import get_embedder
    from knowledge.models import Chunk
    from knowledge.pipeline import Ingestion, embed_in_batches

    texts = [document_text(rng, words) for _ in range(documents)]
    get_embedder(collection.embedder).embed(["load the model before the clock starts"])
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    results = []
    with Ingestion() as ingestion:
        for number, text in enumerate(texts, start=1):
            submitted = services.document_submit(
                collection=collection,
                content=text.encode(),
                filename=f"doc-{number}.txt",
                title=f"Generated document {number}",
                source=f"generated/{number}",
                enqueue=False,
            )
            results += ingestion.add(submitted.document.pk)
            if number % 200 == 0:
                print(f"  submitted {number}/{documents} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        results += ingestion.finish()
    seconds = time.perf_counter() - started
    for result in results:
        if result.outcome != "ready":
            print(f"  document {result.document_id}: {result.outcome} {result.error}", file=sys.stderr)
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
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


def scifact_pieces(data: Path, wanted: int, rng: random.Random) -> list[str]:
    """``wanted`` texts cut from SciFact abstracts: every sentence, then runs of two and of three sentences, in a
    seeded shuffle of each tier: real scientific prose of one to three sentences, as short chunks are."""
    tiers: list[list[str]] = [[], [], []]
    for line in (data / "corpus.jsonl").open():
        abstract = json.loads(line)
        sentences = [s for s in SENTENCE_END.split(abstract["text"].strip()) if len(s.split()) >= 4]
        for size, tier in enumerate(tiers, start=1):
            tier += [" ".join(sentences[i : i + size]) for i in range(len(sentences) - size + 1)]
    pieces: list[str] = []
    for tier in tiers:
        rng.shuffle(tier)
        pieces += tier[: wanted - len(pieces)]
    if len(pieces) < wanted:
        raise SystemExit(f"SciFact yields {len(pieces)} pieces; --chunks asks for {wanted} more than the ingest made")
    return pieces


def embeddings_of(texts: list[str], embedder_name: str, *, seed: int) -> Any:
    """The model's vectors for ``texts`` (a prefix of ``scifact_pieces``'s seeded order), from var/bench-cache.

    The cache holds the vectors of the first pieces of that order embedded so far, keyed by the embedder and the
    seed, so a run that needs fewer pieces slices it and one that needs more embeds only the rest (several minutes
    of CPU for 80,000 pieces, the same every run; ``--embed-only`` fills it ahead of a timed run)."""
    import numpy as np

    from knowledge.pipeline import embed_in_batches

    cached = REPO_ROOT / "var" / "bench-cache" / f"pieces-{embedder_name.replace('/', '_')}-seed{seed}.npz"
    matrix, known = np.zeros((0, 0), dtype=np.float32), []
    if cached.exists():
        stored = np.load(cached)
        matrix, known = stored["vectors"], list(stored["digests"])
    digests = [hashlib.sha256(text.encode()).hexdigest()[:16] for text in texts]
    kept = 0
    while kept < min(len(known), len(digests)) and known[kept] == digests[kept]:
        kept += 1
    if kept == len(digests):
        return matrix[:kept]
    started = time.perf_counter()
    parts = [matrix[:kept]] if kept else []
    for offset in range(kept, len(texts), 4096):
        parts.append(embed_in_batches(texts[offset : offset + 4096], embedder_name=embedder_name))
        print(
            f"  embedded {min(offset + 4096, len(texts)) - kept}/{len(texts) - kept} pieces "
            f"in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
    matrix = np.vstack(parts).astype(np.float32)
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cached, vectors=matrix, digests=np.array(digests))
    return matrix


def store_chunks(document: Any, texts: list[str], vectors: Any, *, first: int) -> None:
    """Bulk-insert chunks of ``document`` (positions from ``first``) and their keyword index, in one transaction,
    as ingestion writes them."""
    from django.db import transaction

    from knowledge import keywords
    from knowledge.models import Chunk

    with transaction.atomic():
        keywords.chunks_store(
            collection_id=document.collection_id,
            chunks=[
                Chunk(
                    document=document,
                    collection_id=document.collection_id,
                    position=first + i,
                    text=text,
                    token_count=len(text.split()),
                    start=0,
                    end=len(text),
                    dimensions=vectors.shape[1],
                    embedding=vectors[i],
                )
                for i, text in enumerate(texts)
            ],
        )


def pieces_rng(seed: int) -> random.Random:
    """The pieces' own seeded order, apart from the generated documents', so ``--embed-only`` can cache them."""
    return random.Random(f"scifact-pieces-{seed}")


def fill(collection: Any, target: int, data: Path, *, seed: int) -> dict[str, float]:
    """Bulk-insert chunk rows up to ``target``: SciFact pieces with their real embeddings (see the docstring)."""
    from knowledge.models import Chunk, Document

    existing = Chunk.objects.filter(collection=collection).count()
    missing = max(0, target - existing)
    if not missing:
        return {"inserted": 0, "seconds": 0.0, "total": float(existing)}
    texts = scifact_pieces(data, missing, pieces_rng(seed))
    vectors = embeddings_of(texts, collection.embedder, seed=seed)
    document = Document.objects.create(
        collection=collection,
        title="SciFact pieces",
        source="scifact/pieces",
        media_type="text/plain",
        sha256="0" * 64,
        status="ready",
        chunk_count=missing,
    )
    started = time.perf_counter()
    batch = 2000
    for offset in range(0, missing, batch):
        store_chunks(document, texts[offset : offset + batch], vectors[offset : offset + batch], first=offset)
        print(
            f"  inserted {min(offset + batch, missing)}/{missing} in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
    seconds = time.perf_counter() - started
    analyze()
    return {"inserted": float(missing), "seconds": seconds, "total": float(existing + missing)}


def analyze() -> None:
    """Fresh planner statistics after a bulk load, as an operator's autovacuum (or ``ANALYZE``) would give."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in ("knowledge_chunk", "knowledge_postingblock", "knowledge_term"):
                cursor.execute(f"VACUUM ANALYZE {table}")
        else:
            cursor.execute("ANALYZE")


def keyword_peer(collection: Any) -> Callable[[str], Any]:
    """The keyword peer: bm25s (BM25 as a sparse matrix in memory, exact) over the same chunks' terms, with
    Lucene's formula, which is ours without the constant factor k1 + 1. Returns the positive top-10 scores of a
    query, scaled by that factor, so they must equal the index's."""
    import bm25s

    from knowledge import keywords
    from knowledge.models import Chunk

    texts = Chunk.objects.filter(collection=collection).order_by("id").values_list("text", flat=True)
    peer = bm25s.BM25(k1=keywords.BM25_K1, b=keywords.BM25_B, method="lucene")
    peer.index([keywords.analyze(text) for text in texts], show_progress=False)

    def top_10_scores(query: str) -> Any:
        found = peer.retrieve([keywords.query_terms(query)], k=10, show_progress=False)
        scores = found.scores[0] * (keywords.BM25_K1 + 1)
        return scores[scores > 0]  # bm25s pads with chunks holding no query word; the index returns none

    return top_10_scores


def keyword_timings(collection: Any, texts: list[str]) -> tuple[list[float], list[float], int]:
    """Each query timed through bm25s (``keyword_peer``) and through the keyword index, in turn, after three to
    warm both; and how many queries' top-10 scores the two agree on."""
    import numpy as np

    from knowledge import keywords

    peer = keyword_peer(collection)
    for text in texts[:3]:
        peer(text)
        keywords.search(collections=[collection], query=text, limit=10)
    in_memory, indexed, same = [], [], 0
    for text in texts:
        ms, peer_scores = timed_ms(peer, text)
        in_memory.append(ms)
        ms, found = timed_ms(keywords.search, collections=[collection], query=text, limit=10)
        indexed.append(ms)
        scores = [score for _, score in found]
        same += len(scores) == len(peer_scores) and bool(np.allclose(scores, peer_scores, rtol=1e-4))
    return in_memory, indexed, same


def scifact_queries(data: Path, count: int) -> list[str]:
    return [json.loads(line)["text"] for line in (data / "queries.jsonl").open()][:count]


def timed_ms(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """How long ``call(*args, **kwargs)`` took in milliseconds, and what it returned."""
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, result


def top_10(matrix: Any, vector: Any) -> Any:
    import numpy as np

    return np.argpartition(-(matrix @ vector), 10)[:10]


def latency(collection: Any, texts: list[str]) -> dict[str, dict[str, Any]]:
    """Each path's p50/p95 over ``texts`` (the query embedding excluded), with the exact baselines of the same run:
    the vector exact scan (pgvector without its index; on SQLite the index itself is the exact scan) and the
    keyword peer (bm25s: exact BM25 over the same terms, in memory)."""
    import numpy as np
    from django.db import connection

    from knowledge import index
    from knowledge.embedders import get_embedder
    from knowledge.models import Chunk
    from knowledge.search import search

    postgres = connection.vendor == "postgresql"
    embedder = get_embedder(collection.embedder)
    vectors = embedder.embed(texts)
    results: dict[str, dict[str, Any]] = {}

    def row(name: str, times: list[float], baseline: str) -> None:
        results[name] = {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95), "baseline": baseline}

    exact_name = "vector exact scan (pgvector, no index)" if postgres else "vector exact (NumPy matrix, the index)"
    for vector in vectors[:3]:  # warm the buffers and the index pages
        index.vector_search(collections=[collection], vector=vector, limit=10)
        index.vector_search(collections=[collection], vector=vector, limit=10, exact=True)
    hnsw_times, exact_times, overlaps = [], [], []
    for vector in vectors:
        exact_ms, exact = timed_ms(index.vector_search, collections=[collection], vector=vector, limit=10, exact=True)
        exact_times.append(exact_ms)
        if postgres:
            hnsw_ms, approx = timed_ms(index.vector_search, collections=[collection], vector=vector, limit=10)
            hnsw_times.append(hnsw_ms)
            wanted = {s.chunk_id for s in exact}
            overlaps.append(len({s.chunk_id for s in approx} & wanted) / max(1, len(wanted)))
    row(exact_name, exact_times, exact_name)
    if postgres:
        row("vector HNSW (index.vector_search)", hnsw_times, exact_name)
        results["HNSW recall@10 vs exact"] = {"value": statistics.fmean(overlaps)}

    # The in-process floor: NumPy over the same vectors in memory, without the database's round trip.
    matrix = np.vstack(list(Chunk.objects.filter(collection=collection).values_list("embedding", flat=True)))
    matrix = matrix.astype(np.float32)
    row("NumPy exact, in memory (floor)", [timed_ms(top_10, matrix, vector)[0] for vector in vectors], exact_name)

    in_memory, indexed, same = keyword_timings(collection, texts)
    peer_name = "keyword exact, in memory (bm25s, peer)"
    row(peer_name, in_memory, peer_name)
    row("keyword index (keywords.search)", indexed, peer_name)
    results["keyword index: same top-10 scores as bm25s"] = {"value": same / len(texts)}

    # The search service end to end, with the query embedding taken out (the same cost for every mode).
    cache = {text: vectors[i] for i, text in enumerate(texts)}
    original = embedder.embed

    def remembered(batch: list[str]) -> Any:
        return np.vstack([cache[t] if t in cache else original([t])[0] for t in batch])

    setattr(embedder, "embed", remembered)  # noqa: B010 - the Protocol's method, swapped for the run
    try:
        for mode, baseline in (("keyword", peer_name), ("vector", exact_name), ("hybrid", exact_name)):
            search(collections=[collection], query=texts[0], mode=mode, top_k=10)
            times = [timed_ms(search, collections=[collection], query=text, mode=mode, top_k=10)[0] for text in texts]
            row(f"service {mode}, top 10", times, baseline)
    finally:
        setattr(embedder, "embed", original)  # noqa: B010
    return results


def print_latency(timings: dict[str, dict[str, Any]]) -> None:
    print("| path | p50 ms | p95 ms | p50 vs its baseline |")
    print("|---|---:|---:|---:|")
    for name, row in timings.items():
        if "p50_ms" in row:
            ratio = row["p50_ms"] / timings[str(row["baseline"])]["p50_ms"]
            print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {ratio:.2f} |")
        else:
            print(f"| {name} | {row['value']:.3f} | | |")


def embed_only(args: argparse.Namespace) -> int:
    """Fill the pieces' embedding cache for ``--embed-only`` pieces, so a timed run later embeds nothing."""
    import django

    django.setup()
    from django.conf import settings

    texts = scifact_pieces(args.data, args.embed_only, pieces_rng(args.seed))
    vectors = embeddings_of(texts, settings.KNOWLEDGE_DEFAULT_EMBEDDER, seed=args.seed)
    print(f"{len(vectors)} pieces' vectors cached ({settings.KNOWLEDGE_DEFAULT_EMBEDDER})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="A PostgreSQL server URL with pgvector (without the database); else SQLite.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact, for the search part.")
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--words", type=int, default=1100, help="Words per generated document (about 10 chunks).")
    parser.add_argument("--raw-sample", type=int, default=2000, help="Chunks the raw throughput is measured on.")
    parser.add_argument(
        "--chunks", type=int, default=100_000, help="Chunks in the collection for the latency part (0: ingest only)."
    )
    parser.add_argument("--database", default=BENCH_DATABASE, help="The throwaway database's name on the server.")
    parser.add_argument("--profile", type=Path, help="Write a cProfile of the ingest to this file.")
    parser.add_argument("--queries", type=int, default=300, help="SciFact queries searched (at most 1,109).")
    parser.add_argument("--embed-only", type=int, metavar="PIECES", help="Only cache this many pieces' vectors.")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="aihub-bench-scale-") as folder:
        url = f"{args.postgres.rstrip('/')}/{args.database}" if args.postgres else None
        configure_django(Path(folder), database_url=url)
        if args.embed_only:
            return embed_only(args)
        if args.postgres:
            recreate_database(args.postgres, args.database)
        try:
            import django

            django.setup()
            from django.conf import settings
            from django.core.management import call_command
            from django.db import connection

            call_command("migrate", verbosity=0)
            from aihub.access.services import tenant_create
            from knowledge.services import collection_create

            tenant = tenant_create(slug="bench", name="Bench")
            collection = collection_create(tenant=tenant, slug="generated")
            print(
                f"{connection.vendor}; {collection.embedder}, {collection.chunk_size} tokens per chunk, "
                f"{collection.chunk_overlap} overlap; embed batch {settings.KNOWLEDGE_EMBED_BATCH_SIZE}"
            )
            ingested = ingest(collection, rng, args.documents, args.words, args.raw_sample, args.profile)
            print(
                f"\ningest: {ingested['documents']} generated documents, {ingested['chunks']} chunks "
                f"in {ingested['seconds']:.1f}s: {ingested['docs_per_s']:.2f} docs/s, "
                f"{ingested['chunks_per_s']:.1f} chunks/s end to end; raw embedding of "
                f"{ingested['raw_sample']} of the same chunks {ingested['raw_embed_chunks_per_s']:.1f} chunks/s; "
                f"ratio {ingested['chunks_per_s'] / ingested['raw_embed_chunks_per_s']:.2f}"
            )
            if not args.chunks:
                if args.json:
                    args.json.write_text(json.dumps({"ingest": ingested}, indent=2))
                return 0
            filled = fill(collection, args.chunks, args.data, seed=args.seed)
            print(
                f"\nfilled to {int(filled['total'])} chunks: {int(filled['inserted'])} SciFact pieces with their "
                f"embeddings bulk-inserted in {filled['seconds']:.1f}s (vector and keyword indexes maintained)"
            )
            queries = scifact_queries(args.data, args.queries)
            timings = latency(collection, queries)
            ef_search = f", hnsw.ef_search={settings.KNOWLEDGE_HNSW_EF_SEARCH}" if args.postgres else ""
            print(
                f"\n{connection.vendor}: latency over {int(filled['total'])} chunks, {len(queries)} SciFact queries, "
                f"top 10, query embedding excluded{ef_search}:"
            )
            print_latency(timings)
            if args.json:
                args.json.write_text(json.dumps({"ingest": ingested, "fill": filled, "latency": timings}, indent=2))
        finally:
            from django.db import connections

            connections.close_all()
            if args.postgres:
                recreate_database(args.postgres, args.database, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
