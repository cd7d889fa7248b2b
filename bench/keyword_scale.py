"""Keyword search at scale: BM25 through the keyword index (``knowledge.keywords``) at 100,000 chunks, against
bm25s's exact BM25 over the same terms in memory (the peer) in the same run, on PostgreSQL or SQLite.

Run from the repository root:

    .venv/bin/python bench/keyword_scale.py                       # SQLite (embedded), in a temporary folder
    .venv/bin/python bench/keyword_scale.py --postgres postgres://postgres@127.0.0.1:54329

The corpus is the one of ``bench/knowledge_scale.py``'s search part, without the model: ``--documents`` generated
documents (a seeded sentence generator over a fixed vocabulary, cut into chunks of about 160 words that
overlap by 40) and then pieces of one to three sentences of the BEIR SciFact abstracts (read in place from
``../shared/data/scifact``) up to ``--chunks``. Chunks are stored and indexed as ingestion stores them (bulk
insert, then the keyword index in the same transaction), with one placeholder vector each: keyword search never
reads vectors, and embedding 80,000 pieces would cost an hour of CPU for nothing measured here (vector and
hybrid latency at scale are ``bench/knowledge_scale.py``'s). Then the first ``--queries`` SciFact queries are
searched for the top 10 through the keyword index, through the search service in keyword mode (which also
loads the hits' chunks and documents) and through bm25s; it prints p50/p95 of each, the ratio to bm25s, and
checks that the index's top-10 scores are bm25s's.

Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import configure_django, percentile, recreate_database
from bench.knowledge_scale import (
    DEFAULT_DATA,
    analyze,
    document_text,
    keyword_timings,
    scifact_pieces,
    scifact_queries,
    store_chunks,
    timed_ms,
)

BENCH_DATABASE = "aihub_bench_keywords"
PEER = "exact BM25 in memory (bm25s, peer)"


def corpus(rng: random.Random, documents: int, words: int, target: int, data: Path) -> list[str]:
    chunks: list[str] = []
    for _ in range(documents):
        tokens = document_text(rng, words).split()
        chunks += [" ".join(tokens[i : i + 160]) for i in range(0, len(tokens), 120)]
    chunks = chunks[:target]
    return chunks + scifact_pieces(data, target - len(chunks), rng)


def load(texts: list[str]) -> tuple[Any, float]:
    import numpy as np

    from aihub.access.services import tenant_create
    from knowledge.models import Collection, Document

    tenant = tenant_create(slug="bench", name="Bench")
    collection = Collection.objects.create(
        tenant=tenant, slug="scale", name="Scale", embedder="local/all-MiniLM-L6-v2", dimensions=8
    )
    document = Document.objects.create(
        collection=collection, title="corpus", media_type="text/plain", sha256="0" * 64, status="ready"
    )
    # Eight dimensions keep the placeholders out of the HNSW indexes (384, 1536): keyword search never reads them.
    placeholder = np.full(8, 1 / np.sqrt(8), dtype=np.float32)
    started = time.perf_counter()
    vectors = np.tile(placeholder, (2000, 1))
    for offset in range(0, len(texts), 2000):
        batch = texts[offset : offset + 2000]
        store_chunks(document, batch, vectors[: len(batch)], first=offset)
        print(f"  stored and indexed {offset + len(batch)}/{len(texts)}", file=sys.stderr)
    seconds = time.perf_counter() - started
    analyze()
    collection.refresh_from_db()
    return collection, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="A PostgreSQL server URL (without the database name); else SQLite.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact.")
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--words", type=int, default=1100)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    texts = corpus(rng, args.documents, args.words, args.chunks, args.data)
    with tempfile.TemporaryDirectory(prefix="aihub-bench-keywords-") as folder:
        url = f"{args.postgres.rstrip('/')}/{BENCH_DATABASE}" if args.postgres else None
        configure_django(Path(folder), database_url=url)
        if args.postgres:
            recreate_database(args.postgres, BENCH_DATABASE)
        try:
            import django

            django.setup()
            from django.core.management import call_command
            from django.db import connection

            from knowledge.search import search

            call_command("migrate", verbosity=0)
            collection, seconds = load(texts)
            queries = scifact_queries(args.data, args.queries)
            for query in queries[:3]:  # warm the service's own statements too
                search(collections=[collection], query=query, mode="keyword", top_k=10)
            served = [
                timed_ms(search, collections=[collection], query=query, mode="keyword", top_k=10)[0]
                for query in queries
            ]
            in_memory, indexed, same = keyword_timings(collection, queries)
            rows = {
                PEER: {"p50_ms": percentile(in_memory, 0.5), "p95_ms": percentile(in_memory, 0.95)},
                "keyword index (keywords.search)": {
                    "p50_ms": percentile(indexed, 0.5),
                    "p95_ms": percentile(indexed, 0.95),
                },
                "service keyword, with the hits' rows": {
                    "p50_ms": percentile(served, 0.5),
                    "p95_ms": percentile(served, 0.95),
                },
            }
            print(
                f"\n{connection.vendor}: {len(texts)} chunks stored and keyword-indexed in {seconds:.0f}s; "
                f"{len(queries)} SciFact queries, top 10"
            )
            print("| path | p50 ms | p95 ms | p50 vs bm25s |")
            print("|---|---:|---:|---:|")
            base = rows[PEER]["p50_ms"]
            for name, row in rows.items():
                print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p50_ms'] / base:.2f} |")
            print(f"same top-10 scores as bm25s: {same}/{len(queries)}")
            if args.json:
                figures = {"database": connection.vendor, "chunks": len(texts), "seconds": seconds, "same": same}
                args.json.write_text(json.dumps({**figures, "latency": rows}, indent=2))
        finally:
            from django.db import connections

            connections.close_all()
            if args.postgres:
                recreate_database(args.postgres, BENCH_DATABASE, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
