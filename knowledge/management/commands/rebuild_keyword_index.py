"""``manage.py rebuild_keyword_index [COLLECTION ...] [--tenant SLUG] [--all]``: build collections' keyword index
again from their chunks' text (after a restore from a dump without it, or to tighten its bounds after deletes)."""

from __future__ import annotations

import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from knowledge import services
from knowledge.management.common import find_collection, find_tenant
from knowledge.models import Chunk, Collection


class Command(BaseCommand):
    help = "Rebuild the keyword index of collections from their chunks, with a progress bar on stderr."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("collections", nargs="*", metavar="COLLECTION")
        parser.add_argument("--tenant")
        parser.add_argument("--all", action="store_true", help="Every collection of every tenant.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["all"] == bool(options["collections"]):
            raise CommandError("Name the collections, or give --all.")
        if options["all"]:
            collections = list(Collection.objects.select_related("tenant").order_by("tenant__slug", "slug"))
        else:
            tenant = find_tenant(options["tenant"])
            collections = [find_collection(tenant, slug) for slug in options["collections"]]
        from tqdm import tqdm

        for collection in collections:
            started = time.monotonic()
            total = Chunk.objects.filter(collection=collection).count()
            with tqdm(
                total=total,
                unit="chunk",
                desc=collection.slug,
                file=sys.stderr,
                disable=options["no_progress"] or not total,
                dynamic_ncols=True,
            ) as bar:
                done = services.collection_keywords_rebuild(
                    collection=collection, progress=lambda n: bar.update(n - bar.n)
                )
            seconds = time.monotonic() - started
            self.stdout.write(f"{collection.tenant.slug}/{collection.slug}: {done} chunks indexed in {seconds:.1f}s")
