"""``manage.py reembed COLLECTION [--embedder ...] [--chunk-size N] [--chunk-overlap N]``: change how a
collection is embedded or chunked and ingest every document again (``reindex`` does the same, unchanged)."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from aihub.access.management.adapters import service_errors
from knowledge import services
from knowledge.management.common import find_collection, find_tenant
from knowledge.models import Document
from knowledge.pipeline import documents_ingest


class Command(BaseCommand):
    help = "Re-chunk and re-embed every document of a collection, optionally with a new embedder or chunking."
    changes_settings = True

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("collection")
        parser.add_argument("--tenant")
        if self.changes_settings:
            parser.add_argument("--embedder")
            parser.add_argument("--chunk-size", type=int)
            parser.add_argument("--chunk-overlap", type=int)
        parser.add_argument("--async", dest="queue", action="store_true", help="Queue on the workers; do not wait.")

    def handle(self, *args: Any, **options: Any) -> None:
        collection = find_collection(find_tenant(options["tenant"]), options["collection"])
        started = time.monotonic()
        with service_errors():
            collection = services.collection_settings_change(
                collection=collection,
                embedder=options.get("embedder"),
                chunk_size=options.get("chunk_size"),
                chunk_overlap=options.get("chunk_overlap"),
                enqueue=options["queue"],
            )
        documents = list(Document.objects.filter(collection=collection).values_list("id", flat=True))
        if options["queue"]:
            self.stdout.write(f"Queued {len(documents)} document(s) of {collection.slug!r}.")
            return
        results = [result.outcome for result in documents_ingest(document_ids=documents)]
        failed = results.count("failed")
        self.stdout.write(
            f"{collection.slug}: {results.count('ready')} ready, {failed} failed in {time.monotonic() - started:.1f}s "
            f"({collection.embedder}, {collection.chunk_size} tokens per chunk)"
        )
        if failed:
            raise CommandError(f"{failed} document(s) failed.")
