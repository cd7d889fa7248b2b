"""Retrieval quality and speed on BEIR SciFact, through aihub's real ingestion pipeline and search service.

Run from the repository root: ``.venv/bin/python bench/retrieval.py`` (SQLite: NumPy exact vectors), or
``--postgres postgres://postgres@127.0.0.1:54329`` for a PostgreSQL with pgvector (HNSW; start one
with ``python scripts/pgserver.py start var/pgserver 54329``). The data is read in place from
``../shared/data/scifact`` (``--data`` elsewhere): 5,183 abstracts, the 300 test queries of ``qrels/test.tsv``
(``--split train``: the 809 of ``qrels/train.tsv``, the ones to tune on).

Re-runs need not ingest again: ``--keep`` keeps the database (PostgreSQL: ``--database``; SQLite: a file in
var/bench-cache) and ``--reuse`` searches it; ``--embedding-cache`` keeps every text's vector in var/bench-cache, so
a new ingest embeds nothing it embedded before. ``--sweep`` replaces quality and latency with hybrid's quality for
each fusion weight x candidate depth (x RRF constant, x BM25's k1 and b with ``--bm25``) on the split: the
tuning, on train.

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
  PostgreSQL also HNSW against an exact scan, with the recall@10 of HNSW against exact; and hybrid with its two
  legs run concurrently against in turn, interleaved, without and with the query's embedding.

Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
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
KEPT_SQLITE = REPO_ROOT / "var" / "bench-cache" / "retrieval.sqlite3"


def load(
    data: Path, limit: int | None, split: str = "test"
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, set[str]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    qrels: dict[str, set[str]] = {}
    for line in list((data / "qrels" / f"{split}.tsv").open())[1:]:
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


def all_queries(data: Path) -> list[str]:
    """Every SciFact query's text (both splits), for the embedding cache."""
    return [json.loads(line)["text"] for line in (data / "queries.jsonl").open()]


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return dcg / ideal if ideal else 0.0


def recall_at_100(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:100]) & relevant) / len(relevant)


class EmbeddingCache:
    """The model's vectors by text, kept in var/bench-cache between runs: the ingest still goes through the whole
    pipeline, but a text embedded once (the same model, the same text) is not embedded again (about ten minutes
    of CPU per run otherwise). The ingest's throughput figures mean nothing with it."""

    def __init__(self, embedder_name: str) -> None:
        import numpy as np

        slug = hashlib.sha256(embedder_name.encode()).hexdigest()[:12]
        self.path = REPO_ROOT / "var" / "bench-cache" / f"retrieval-embeddings-{slug}.npz"
        self.known: dict[str, Any] = {}
        self.added = 0
        if self.path.exists():
            with np.load(self.path) as stored:
                self.known = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def wrap(self, embedder: Any) -> Callable[[list[str]], Any]:
        """Route ``embedder.embed`` through the cache; returns the original method."""
        import numpy as np

        original: Callable[[list[str]], Any] = embedder.embed

        def embed(texts: list[str]) -> Any:
            missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self.known))
            if missing:
                for text, vector in zip(missing, original(missing), strict=True):
                    self.known[self.key(text)] = vector
                self.added += len(missing)
            if not texts:
                return original(texts)
            return np.vstack([self.known[self.key(t)] for t in texts])

        setattr(embedder, "embed", embed)  # noqa: B010 - the Protocol's method, swapped for the run
        self.original = original
        return original

    def warm(self, texts: list[str], batch: int = 512) -> None:
        """Embed the texts not cached yet in large batches (far faster than the ingest's few chunks at a time),
        saving as it goes so an interrupted run keeps what it did."""
        missing = [t for t in dict.fromkeys(texts) if self.key(t) not in self.known]
        started = time.perf_counter()
        for offset in range(0, len(missing), batch):
            part = missing[offset : offset + batch]
            for text, vector in zip(part, self.original(part), strict=True):
                self.known[self.key(text)] = vector
            self.added += len(part)
            self.save()
            print(
                f"  embedded {offset + len(part)}/{len(missing)} new texts in {time.perf_counter() - started:.0f}s",
                file=sys.stderr,
            )

    def save(self) -> None:
        import numpy as np

        if not self.added:
            return
        self.added = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.known)
        np.savez(self.path, keys=np.array(keys), vectors=np.vstack([self.known[k] for k in keys]))


def chunk_texts(corpus: list[dict[str, Any]], collection: Any) -> list[str]:
    """The chunks the pipeline will cut from these abstracts (its extractor and chunker, the collection's sizes)."""
    from aihub.extraction import extract_text
    from knowledge.chunking import chunk_text
    from knowledge.embedders import get_embedder

    embedder = get_embedder(collection.embedder)
    size = min(collection.chunk_size, embedder.max_tokens)
    texts = []
    for doc in corpus:
        extracted = extract_text(abstract_bytes(doc), "text/plain")
        pieces = chunk_text(extracted, size=size, overlap=collection.chunk_overlap, count_tokens=embedder.count_tokens)
        texts += [piece.text for piece in pieces]
    return texts


def abstract_bytes(doc: dict[str, Any]) -> bytes:
    return f"{doc['title']}\n\n{doc['text']}".encode()


def ingest(corpus: list[dict[str, Any]], collection: Any, raw_sample: int, raw: bool = True) -> dict[str, float]:
    from knowledge import services
    from knowledge.embedders import get_embedder
    from knowledge.models import Chunk
    from knowledge.pipeline import Ingestion

    get_embedder(collection.embedder).embed(["load the model before the clock starts"])
    started = time.perf_counter()
    results = []
    with Ingestion() as ingestion:
        for number, doc in enumerate(corpus, start=1):
            submitted = services.document_submit(
                collection=collection,
                content=abstract_bytes(doc),
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
    figures = {
        "documents": len(corpus),
        "chunks": len(texts),
        "seconds": seconds,
        "docs_per_s": len(corpus) / seconds,
        "chunks_per_s": len(texts) / seconds,
    }
    if raw:
        from knowledge.pipeline import embed_in_batches

        # The limit: the same model on the same chunk texts, in batches, nothing else (a sample keeps it short).
        sample = texts[:raw_sample] if raw_sample else texts
        raw_started = time.perf_counter()
        embed_in_batches(sample, embedder_name=collection.embedder)
        figures["raw_embed_chunks_per_s"] = len(sample) / (time.perf_counter() - raw_started)
    return figures


def hybrid_settings(alpha: float | None, candidates: int | None) -> dict[str, Any]:
    """The search arguments that override the service's hybrid defaults (none: its defaults)."""
    return {name: value for name, value in (("alpha", alpha), ("candidates", candidates)) if value is not None}


def quality(
    collection: Any,
    queries: dict[str, str],
    qrels: dict[str, set[str]],
    *,
    alpha: float | None = None,
    candidates: int | None = None,
) -> dict[str, dict[str, float]]:
    from knowledge.search import search

    hybrid = hybrid_settings(alpha, candidates)

    results: dict[str, dict[str, float]] = {}
    for mode in ("keyword", "vector", "hybrid"):
        ndcgs, recalls = [], []
        for query_id, text in queries.items():
            extra = hybrid if mode == "hybrid" else {}
            hits = search(collections=[collection], query=text, mode=mode, top_k=100, **extra)
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


def latency(
    collection: Any, queries: dict[str, str], *, alpha: float | None = None, candidates: int | None = None
) -> dict[str, dict[str, float]]:
    import numpy as np
    from django.test import override_settings

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
        hybrid = hybrid_settings(alpha, candidates)
        for mode in ("keyword", "vector", "hybrid"):
            extra = hybrid if mode == "hybrid" else {}
            search(collections=[collection], query=texts[0], mode=mode, top_k=10, **extra)  # warm caches
            times = []
            for text in texts:
                times += timed(partial(search, collections=[collection], query=text, mode=mode, top_k=10, **extra), 1)
            results[f"service {mode}"] = {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95)}
        # The same hybrid searches with the legs one after the other, interleaved with the concurrent ones so both
        # see the same load: what running them side by side buys, without the query's embedding and with it (the
        # model's own method, past any cache: the vector leg embeds the query in its thread).
        for embedding, embed in (("", remembered), (", query embedded", type(embedder).embed.__get__(embedder))):
            setattr(embedder, "embed", embed)  # noqa: B010
            concurrent, in_turn = [], []
            for text in texts:
                call = partial(search, collections=[collection], query=text, mode="hybrid", top_k=10, **hybrid)
                concurrent += timed(call, 1)
                with override_settings(KNOWLEDGE_SEARCH_CONCURRENT_LEGS=False):
                    in_turn += timed(call, 1)
            for name, times in (("legs concurrently", concurrent), ("legs in turn", in_turn)):
                results[f"service hybrid{embedding}, {name}"] = {
                    "p50_ms": percentile(times, 0.5),
                    "p95_ms": percentile(times, 0.95),
                }
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


def sweep(
    collection: Any,
    queries: dict[str, str],
    qrels: dict[str, set[str]],
    *,
    alphas: list[float],
    depths: list[int],
    rrf_ks: list[int],
    bm25: list[tuple[float, float]],
) -> list[dict[str, float]]:
    """nDCG@10 and recall@100 of hybrid search (and of the keyword leg alone, alpha 0) for every BM25 (k1, b) x
    fusion weight x candidate depth x RRF constant.

    Each query's vector leg is fetched once at the deepest depth through the search service's own legs, its
    keyword leg once per (k1, b) (the index keeps raw frequencies and lengths, so they apply at query time), then
    both are fused by the service's own fusion for every setting, each depth taking the first ``depth`` of each
    leg (the same lists a search at that depth gets: both legs are exact orders, except HNSW, whose deeper search
    can only find more of the true neighbours).
    """
    from knowledge import index, keywords
    from knowledge import search as knowledge_search
    from knowledge.models import Chunk

    deepest = max(depths)
    corpus_ids = {
        chunk_id: metadata["corpus_id"]
        for chunk_id, metadata in Chunk.objects.filter(collection=collection).values_list("id", "document__metadata")
    }
    started = time.perf_counter()
    vectors = {
        query_id: knowledge_search.search_legs(collections=[collection], query=text, depth=deepest)[0]
        for query_id, text in queries.items()
    }
    print(f"  vector legs of {len(vectors)} queries at depth {deepest} in {time.perf_counter() - started:.0f}s")
    rows = []
    defaults = keywords.BM25_K1, keywords.BM25_B
    try:
        for k1, b in bm25:
            keywords.BM25_K1, keywords.BM25_B = k1, b
            legs = {
                query_id: (
                    vectors[query_id],
                    index.keyword_search(collections=[collection], query=text, limit=deepest),
                )
                for query_id, text in queries.items()
            }
            for rrf_k in rrf_ks:
                for depth in depths:
                    for alpha in alphas:
                        ndcgs, recalls = [], []
                        for query_id, (vector, keyword) in legs.items():
                            fused = knowledge_search.fuse(vector[:depth], keyword[:depth], alpha=alpha, rrf_k=rrf_k)
                            ranked = list(dict.fromkeys(corpus_ids[chunk_id] for chunk_id, _ in fused[:100]))
                            ndcgs.append(ndcg_at_10(ranked, qrels[query_id]))
                            recalls.append(recall_at_100(ranked, qrels[query_id]))
                        rows.append(
                            {
                                "k1": k1,
                                "b": b,
                                "alpha": alpha,
                                "candidates": depth,
                                "rrf_k": rrf_k,
                                "ndcg@10": statistics.fmean(ndcgs),
                                "recall@100": statistics.fmean(recalls),
                            }
                        )
    finally:
        keywords.BM25_K1, keywords.BM25_B = defaults
    return rows


def numbers(text: str, kind: Callable[[str], Any]) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--postgres", help="A PostgreSQL server URL with pgvector (without the database name).")
    parser.add_argument("--database", default=BENCH_DATABASE, help="With --postgres: the database's name.")
    parser.add_argument("--limit", type=int, help="A quick run on this many abstracts (and some queries).")
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="test",
        help="The queries: tune on train, report on test (default).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument(
        "--raw-sample", type=int, default=2000, help="Chunks the raw embedding throughput is measured on (0: all)."
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"Keep the database afterwards for --reuse (PostgreSQL: the database; SQLite: {KEPT_SQLITE}).",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Search the corpus a kept database already holds (migrated first); no ingest.",
    )
    parser.add_argument(
        "--embedding-cache",
        action="store_true",
        help="Embed each text once across runs (var/bench-cache); the ingest's throughput figures then mean nothing.",
    )
    parser.add_argument(
        "--alpha", type=float, help="Hybrid's fusion weight of the vector leg (default: the service's)."
    )
    parser.add_argument("--candidates", type=int, help="Hybrid's candidates per leg (default: the service's).")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="Instead of quality and latency: hybrid quality for every --alphas x --depths x --rrf-ks on the split.",
    )
    parser.add_argument("--alphas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    parser.add_argument("--depths", default="20,50,100,200,500,1000")
    parser.add_argument("--rrf-ks", default="60")
    parser.add_argument("--bm25", default="1.2:0.75", help="With --sweep: BM25's k1:b pairs, comma-separated.")
    args = parser.parse_args()
    if args.reuse and args.limit:
        parser.error("--reuse searches the whole kept corpus; --limit does not apply")

    with tempfile.TemporaryDirectory(prefix="aihub-bench-retrieval-") as folder:
        var_dir = Path(folder)
        configure_django(
            var_dir, database_url=f"{args.postgres.rstrip('/')}/{args.database}" if args.postgres else None
        )
        if not args.postgres and (args.keep or args.reuse):
            if args.reuse and not KEPT_SQLITE.exists():
                parser.error(f"--reuse: no kept database at {KEPT_SQLITE} (run once with --keep)")
            KEPT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
            if not args.reuse:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{KEPT_SQLITE}{suffix}").unlink(missing_ok=True)
            os.environ["SQLITE_PATH"] = str(KEPT_SQLITE)
        if args.postgres and not args.reuse:
            recreate_database(args.postgres, args.database)
        try:
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            from aihub.access.services import tenant_create
            from knowledge.embedders import get_embedder
            from knowledge.models import Collection
            from knowledge.services import collection_create

            corpus, queries, qrels = load(args.data, args.limit, args.split)
            if args.reuse:
                collection = Collection.objects.get(tenant__slug="bench", slug="scifact")
            else:
                tenant = tenant_create(slug="bench", name="Bench")
                collection = collection_create(tenant=tenant, slug="scifact")
            cache = EmbeddingCache(collection.embedder) if args.embedding_cache else None
            if cache is not None:
                cache.wrap(get_embedder(collection.embedder))
                cache.warm(all_queries(args.data) + ([] if args.reuse else chunk_texts(corpus, collection)))
            backend = "PostgreSQL + pgvector (HNSW)" if args.postgres else "SQLite (NumPy exact)"
            print(f"SciFact: {len(corpus)} abstracts, {len(queries)} {args.split} queries; {backend}")
            print(
                f"collection: {collection.embedder}, {collection.chunk_size} tokens per chunk, "
                f"{collection.chunk_overlap} overlap"
            )
            ingested: dict[str, float] = {}
            if args.reuse:
                print(f"\nreusing the kept database: {collection.documents.count()} documents, no ingest")
            else:
                ingested = ingest(corpus, collection, args.raw_sample, raw=cache is None)
                if cache is not None:
                    cache.save()
                print(
                    f"\ningest: {ingested['documents']} documents, {ingested['chunks']} chunks "
                    f"in {ingested['seconds']:.1f}s: "
                    f"{ingested['docs_per_s']:.1f} docs/s, {ingested['chunks_per_s']:.1f} chunks/s end to end"
                    + (
                        " (embeddings from the cache: not a throughput figure)"
                        if cache is not None
                        else f"; raw embedding {ingested['raw_embed_chunks_per_s']:.1f} chunks/s; "
                        f"ratio {ingested['chunks_per_s'] / ingested['raw_embed_chunks_per_s']:.2f}"
                    )
                )
            if args.sweep:
                rows = sweep(
                    collection,
                    queries,
                    qrels,
                    alphas=numbers(args.alphas, float),
                    depths=numbers(args.depths, int),
                    rrf_ks=numbers(args.rrf_ks, int),
                    bm25=[(float(k1), float(b)) for k1, b in (pair.split(":") for pair in args.bm25.split(","))],
                )
                if cache is not None:
                    cache.save()
                print_sweep(rows, args.split)
                if args.json:
                    args.json.write_text(json.dumps({"split": args.split, "sweep": rows}, indent=2))
                return 0
            print(f"hybrid: {hybrid_settings(args.alpha, args.candidates) or 'the service defaults'}")
            scores = quality(collection, queries, qrels, alpha=args.alpha, candidates=args.candidates)
            if cache is not None:
                cache.save()
            base = scores["keyword"]
            print(f"\n{args.split} queries:")
            print("| search | nDCG@10 | recall@100 | nDCG@10 vs keyword |")
            print("|---|---|---|---|")
            for mode, row in scores.items():
                print(
                    f"| {mode} | {row['ndcg@10']:.3f} | {row['recall@100']:.3f} | "
                    f"{row['ndcg@10'] / base['ndcg@10']:.2f} |"
                )
            timings = latency(collection, queries, alpha=args.alpha, candidates=args.candidates)
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
                args.json.write_text(
                    json.dumps(
                        {"split": args.split, "ingest": ingested, "quality": scores, "latency": timings}, indent=2
                    )
                )
        finally:
            from django.db import connections

            connections.close_all()
            if args.keep:
                print(f"kept the database {args.database if args.postgres else KEPT_SQLITE}")
            elif args.postgres and not args.reuse:
                recreate_database(args.postgres, args.database, drop_only=True)
    return 0


def print_sweep(rows: list[dict[str, float]], split: str) -> None:
    ranked = sorted(rows, key=lambda row: (-row["ndcg@10"], -row["recall@100"], row["candidates"]))
    print(f"\nhybrid on the {split} queries, best nDCG@10 first (alpha: the vector leg's weight):")
    print("| k1 | b | alpha | candidates | rrf k | nDCG@10 | recall@100 |")
    print("|---|---|---|---|---|---|---|")
    for row in ranked:
        print(
            f"| {row['k1']:g} | {row['b']:g} | {row['alpha']:g} | {row['candidates']} | {row['rrf_k']} | "
            f"{row['ndcg@10']:.4f} | {row['recall@100']:.4f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
