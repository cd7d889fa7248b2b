"""Retrieval quality and speed on BEIR SciFact, through aihub's real ingestion pipeline and search service.

Run from the repository root: ``.venv/bin/python bench/retrieval.py`` (SQLite: NumPy exact vectors + FTS5), or
``--postgres postgres://postgres@127.0.0.1:54329`` for a PostgreSQL with pgvector (HNSW + full text; start one
with ``python scripts/pgserver.py start var/pgserver 54329``). The data is read in place from
``../shared/data/scifact`` (``--data`` elsewhere): 5,183 abstracts, the 300 test queries of ``qrels/test.tsv``.

It measures, in the same run:

- **ingest**: every abstract (title + text) submitted as one document and ingested inline as ``manage.py
  ingest`` does (``knowledge.pipeline.Ingestion``: sniff, extract, chunk, embed in full batches across
  documents, store, index): documents/s and chunks/s end to end, next to the raw embedding throughput of
  the same model on the same chunk texts (the limit), and the ratio;
- **quality**: nDCG@10 and recall@100 at the document level (a document ranks where its best chunk ranks)
  for keyword, vector and hybrid search, each asked for the top 100 chunks; keyword (BM25 on SQLite) is the
  baseline the others are divided by; published reference points: BM25 0.665 (BEIR), all-MiniLM-L6-v2 0.645;
- **latency**: p50/p95 of one query through the search service per mode, next to a bare NumPy brute-force
  top-10 over the same vectors (the in-process floor; the query's embedding excluded from both); on
  PostgreSQL also HNSW against an exact scan, with the recall@10 of HNSW against exact.

Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO_ROOT, configure_django, percentile, recreate_database

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"
BENCH_DATABASE = "aihub_bench_retrieval"


def load(data: Path, limit: int | None) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, set[str]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    qrels: dict[str, set[str]] = {}
    for line in list((data / "qrels" / "test.tsv").open())[1:]:
        query_id, corpus_id, score = line.rstrip("\n").split("\t")
        if int(score) > 0:
            qrels.setdefault(query_id, set()).add(corpus_id)
    queries = {}
    for line in (data / "queries.jsonl").open():
        query = json.loads(line)
        if query["_id"] in qrels:
            queries[query["_id"]] = query["text"]
    if limit:
        # A quick run: the first queries, their relevant abstracts, then others up to the limit.
        keep_queries = dict(list(queries.items())[: max(1, limit // 20)])
        needed = set().union(*(qrels[q] for q in keep_queries))
        chosen = [d for d in corpus if d["_id"] in needed]
        chosen += [d for d in corpus if d["_id"] not in needed][: max(0, limit - len(chosen))]
        corpus, queries = chosen, keep_queries
        qrels = {q: qrels[q] for q in queries}
    return corpus, queries, qrels


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return dcg / ideal if ideal else 0.0


def recall_at_100(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:100]) & relevant) / len(relevant)


def ingest(corpus: list[dict[str, Any]], collection: Any, raw_sample: int) -> dict[str, float]:
    from knowledge import services
    from knowledge.embedders import get_embedder
    from knowledge.models import Chunk
    from knowledge.pipeline import Ingestion

    get_embedder(collection.embedder).embed(["load the model before the clock starts"])
    started = time.perf_counter()
    results = []
    with Ingestion() as ingestion:
        for number, doc in enumerate(corpus, start=1):
            content = f"{doc['title']}\n\n{doc['text']}".encode()
            submitted = services.document_submit(
                collection=collection,
                content=content,
                filename=f"{doc['_id']}.txt",
                title=doc["title"][:500],
                source=doc["_id"],
                metadata={"corpus_id": doc["_id"]},
                enqueue=False,
            )
            results += ingestion.add(submitted.document.pk)
            if number % 500 == 0:
                print(f"  submitted {number}/{len(corpus)} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        results += ingestion.finish()
    seconds = time.perf_counter() - started
    for result in results:
        if result.outcome != "ready":
            print(f"  document {result.document_id}: {result.outcome} {result.error}", file=sys.stderr)
    texts = list(Chunk.objects.filter(collection=collection).order_by("id").values_list("text", flat=True))
    from knowledge.pipeline import embed_in_batches

    # The limit: the same model on the same chunk texts, in batches, nothing else (a sample keeps it short).
    sample = texts[:raw_sample] if raw_sample else texts
    raw_started = time.perf_counter()
    embed_in_batches(sample, embedder_name=collection.embedder)
    raw_seconds = time.perf_counter() - raw_started
    return {
        "documents": len(corpus),
        "chunks": len(texts),
        "seconds": seconds,
        "docs_per_s": len(corpus) / seconds,
        "chunks_per_s": len(texts) / seconds,
        "raw_embed_chunks_per_s": len(sample) / raw_seconds,
    }


def quality(collection: Any, queries: dict[str, str], qrels: dict[str, set[str]]) -> dict[str, dict[str, float]]:
    from knowledge.search import search

    results: dict[str, dict[str, float]] = {}
    for mode in ("keyword", "vector", "hybrid"):
        ndcgs, recalls = [], []
        for query_id, text in queries.items():
            hits = search(collections=[collection], query=text, mode=mode, top_k=100)
            ranked = list(dict.fromkeys(hit.metadata["corpus_id"] for hit in hits))
            ndcgs.append(ndcg_at_10(ranked, qrels[query_id]))
            recalls.append(recall_at_100(ranked, qrels[query_id]))
        results[mode] = {"ndcg@10": statistics.fmean(ndcgs), "recall@100": statistics.fmean(recalls)}
    return results


def timed(call: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def brute_force_top10(matrix: Any, vector: Any) -> Any:
    import numpy as np

    return np.argpartition(-(matrix @ vector), 10)[:10]


def latency(collection: Any, queries: dict[str, str]) -> dict[str, dict[str, float]]:
    import numpy as np

    from knowledge import index
    from knowledge.embedders import get_embedder
    from knowledge.models import Chunk
    from knowledge.search import search

    texts = list(queries.values())
    embedder = get_embedder(collection.embedder)
    vectors = embedder.embed(texts)
    # The query embedding is the same cost for every mode; take it out so the index is what is measured.
    cache = {text: vectors[i] for i, text in enumerate(texts)}
    original = embedder.embed

    def remembered(batch: list[str]) -> Any:
        return np.vstack([cache[t] if t in cache else original([t])[0] for t in batch])

    setattr(embedder, "embed", remembered)  # noqa: B010 - the Protocol's method, swapped for the run
    results: dict[str, dict[str, float]] = {}
    try:
        for mode in ("keyword", "vector", "hybrid"):
            search(collections=[collection], query=texts[0], mode=mode, top_k=10)  # warm caches
            times = []
            for text in texts:
                times += timed(partial(search, collections=[collection], query=text, mode=mode, top_k=10), 1)
            results[f"service {mode}"] = {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95)}
        from django.db import connection

        if connection.vendor == "postgresql":
            exact_times, overlaps = [], []
            for i in range(len(texts)):
                exact_times += timed(
                    partial(index.vector_search, collections=[collection], vector=vectors[i], limit=10, exact=True), 1
                )
                approx = {
                    s.chunk_id for s in index.vector_search(collections=[collection], vector=vectors[i], limit=10)
                }
                exact = {
                    s.chunk_id
                    for s in index.vector_search(collections=[collection], vector=vectors[i], limit=10, exact=True)
                }
                overlaps.append(len(approx & exact) / max(1, len(exact)))
            results["pgvector exact scan"] = {
                "p50_ms": percentile(exact_times, 0.5),
                "p95_ms": percentile(exact_times, 0.95),
            }
            results["hnsw recall@10 vs exact"] = {"value": statistics.fmean(overlaps)}
    finally:
        setattr(embedder, "embed", original)  # noqa: B010
    matrix = np.vstack(list(Chunk.objects.filter(collection=collection).values_list("embedding", flat=True)))
    matrix = matrix.astype(np.float32)
    times = []
    for i in range(len(texts)):
        times += timed(partial(brute_force_top10, matrix, vectors[i]), 1)
    results["numpy brute force (floor)"] = {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95)}
    results["_chunks"] = {"value": float(len(matrix))}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--postgres", help="A PostgreSQL server URL with pgvector (without the database name).")
    parser.add_argument("--limit", type=int, help="A quick run on this many abstracts (and some queries).")
    parser.add_argument("--database", default=BENCH_DATABASE, help="With --postgres: the database's name.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument(
        "--raw-sample", type=int, default=2000, help="Chunks the raw embedding throughput is measured on (0: all)."
    )
    parser.add_argument(
        "--keep", action="store_true", help="With --postgres: keep the database afterwards (for --reuse)."
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="With --postgres: search the corpus a kept database already holds; no ingest (quality and latency only).",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aihub-bench-retrieval-") as folder:
        var_dir = Path(folder)
        configure_django(
            var_dir, database_url=f"{args.postgres.rstrip('/')}/{args.database}" if args.postgres else None
        )
        if args.reuse and not args.postgres:
            parser.error("--reuse needs --postgres")
        if args.postgres and not args.reuse:
            recreate_database(args.postgres, args.database)
        try:
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            from aihub.access.services import tenant_create
            from knowledge.models import Collection
            from knowledge.services import collection_create

            corpus, queries, qrels = load(args.data, args.limit)
            if args.reuse:
                collection = Collection.objects.get(tenant__slug="bench", slug="scifact")
            else:
                tenant = tenant_create(slug="bench", name="Bench")
                collection = collection_create(tenant=tenant, slug="scifact")
            backend = "PostgreSQL + pgvector (HNSW, full text)" if args.postgres else "SQLite (NumPy exact, FTS5)"
            print(f"SciFact: {len(corpus)} abstracts, {len(queries)} test queries; {backend}")
            print(
                f"collection: {collection.embedder}, {collection.chunk_size} tokens per chunk, "
                f"{collection.chunk_overlap} overlap"
            )
            ingested: dict[str, float] = {}
            if args.reuse:
                print(f"\nreusing the kept database: {collection.documents.count()} documents, no ingest")
            else:
                ingested = ingest(corpus, collection, args.raw_sample)
                print(
                    f"\ningest: {ingested['documents']} documents, {ingested['chunks']} chunks "
                    f"in {ingested['seconds']:.1f}s: "
                    f"{ingested['docs_per_s']:.1f} docs/s, {ingested['chunks_per_s']:.1f} chunks/s end to end; "
                    f"raw embedding {ingested['raw_embed_chunks_per_s']:.1f} chunks/s; "
                    f"ratio {ingested['chunks_per_s'] / ingested['raw_embed_chunks_per_s']:.2f}"
                )
            scores = quality(collection, queries, qrels)
            base = scores["keyword"]
            print("\n| search | nDCG@10 | recall@100 | nDCG@10 vs keyword |")
            print("|---|---|---|---|")
            for mode, row in scores.items():
                print(
                    f"| {mode} | {row['ndcg@10']:.3f} | {row['recall@100']:.3f} | "
                    f"{row['ndcg@10'] / base['ndcg@10']:.2f} |"
                )
            timings = latency(collection, queries)
            floor = timings["numpy brute force (floor)"]["p50_ms"]
            print(f"\nlatency over {int(timings.pop('_chunks')['value'])} chunks, top 10, query embedding excluded:")
            print("| path | p50 ms | p95 ms | p50 vs NumPy floor |")
            print("|---|---|---|---|")
            for name, row in timings.items():
                if "p50_ms" in row:
                    print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p50_ms'] / floor:.1f} |")
                else:
                    print(f"| {name} | {row['value']:.3f} | | |")
            if args.json:
                args.json.write_text(json.dumps({"ingest": ingested, "quality": scores, "latency": timings}, indent=2))
        finally:
            if args.postgres:
                from django.db import connections

                connections.close_all()
                if args.keep:
                    print(f"kept the database {args.database}")
                else:
                    recreate_database(args.postgres, args.database, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
