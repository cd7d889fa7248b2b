"""``manage.py ingest COLLECTION PATH...``: load files, folders and globs into a collection.

Each file is submitted like an upload (sniffed type, deduplicated by content hash, replacing the document of the
same path when its bytes changed) and ingested inline (the chunks of consecutive files embedded together in full
batches while the next files are read and chunked), or queued on the workers with ``--async``. A progress bar
goes to stderr, error lines and the summary to stdout; the exit status is 1 when any document failed. Ctrl-C
stops after the current step: chunks are swapped atomically, and the documents being ingested are marked failed
(or removed, if this run added them), so nothing is left half-ingested.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from argparse import ArgumentParser
from contextlib import closing
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from aihub.access.management.adapters import service_errors
from knowledge import services
from knowledge.management.common import find_collection, find_tenant
from knowledge.pipeline import files_ingest


def _metadata(pairs: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--metadata wants key=value, not {pair!r}.")
        metadata[key] = value
    return metadata


def expand_paths(paths: list[str], *, recursive: bool) -> tuple[list[Path], list[str]]:
    """The files the paths name (folders and globs expanded, hidden files skipped), and error lines."""
    files: dict[Path, None] = {}
    errors: list[str] = []
    for raw in paths:
        matches = [Path(p) for p in sorted(glob.glob(raw, recursive=recursive))] if glob.has_magic(raw) else [Path(raw)]
        if not matches:
            errors.append(f"{raw}: no such file or folder")
        for path in matches:
            if path.is_dir():
                pattern = "**/*" if recursive else "*"
                root = path.resolve()
                for found in sorted(path.glob(pattern)):
                    hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
                    if hidden or not found.is_file():
                        continue
                    # A link inside the folder may lead anywhere (/etc, another user's home); naming a folder
                    # means what lies in it, so such files are reported, not read. Named directly, they are read.
                    if not found.resolve().is_relative_to(root):
                        errors.append(f"{found}: a link that leads outside {raw}; not followed (name it directly)")
                        continue
                    files[found.resolve()] = None
            elif path.is_file():
                files[path.resolve()] = None
            elif not path.exists():
                errors.append(f"{raw}: no such file or folder")
            else:
                errors.append(f"{raw}: not a regular file")
    return list(files), errors


class Command(BaseCommand):
    help = "Ingest files, folders and globs into a knowledge collection."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("collection", help="The collection's slug.")
        parser.add_argument("paths", nargs="+", help="Files, folders or glob patterns (quote them).")
        parser.add_argument("--tenant", help="The tenant's slug (needed when there is more than one).")
        parser.add_argument("--recursive", "-r", action="store_true", help="Descend into sub-folders (and ** globs).")
        parser.add_argument("--metadata", "-m", action="append", default=[], help="key=value on every document.")
        parser.add_argument("--create", action="store_true", help="Create the collection when it does not exist.")
        parser.add_argument("--embedder", help="With --create: the embedder of the new collection.")
        parser.add_argument("--async", dest="queue", action="store_true", help="Queue on the workers; do not wait.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = find_tenant(options["tenant"])
        metadata = _metadata(options["metadata"])
        with service_errors():
            try:
                collection = find_collection(tenant, options["collection"])
            except CommandError:
                if not options["create"]:
                    raise
                collection = services.collection_create(
                    tenant=tenant, slug=options["collection"], embedder=options["embedder"]
                )
                self.stdout.write(f"Created collection {collection.slug!r} ({collection.embedder}).")
        files, errors = expand_paths(options["paths"], recursive=options["recursive"])
        for line in errors:
            self.stdout.write(self.style.ERROR(f"error: {line}"))
        counts = {"added": 0, "unchanged": 0, "replaced": 0, "failed": len(errors), "chunks": 0}
        started = time.monotonic()
        progress = self._progress(len(files), disabled=options["no_progress"])
        results = files_ingest(collection=collection, paths=files, metadata=metadata, queue=options["queue"])
        try:
            with closing(results):
                for path, result in results:
                    progress.set_postfix_str(path.name[-40:], refresh=False)
                    counts[result.outcome] += 1
                    counts["chunks"] += result.chunks
                    if result.error:
                        self.stdout.write(self.style.ERROR(f"error: {path}: {result.error}"))
                    progress.update(1)
        except KeyboardInterrupt:
            progress.close()
            self._summary(counts, time.monotonic() - started, queued=options["queue"])
            self.stdout.write(self.style.WARNING("Interrupted: the documents above are complete; run again to finish."))
            sys.exit(130)
        progress.close()
        self._summary(counts, time.monotonic() - started, queued=options["queue"])
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} document(s) failed.")

    def _progress(self, total: int, *, disabled: bool) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit="doc", file=sys.stderr, disable=disabled or not total, dynamic_ncols=True)

    def _summary(self, counts: dict[str, int], seconds: float, *, queued: bool) -> None:
        chunks = "queued" if queued else f"{counts['chunks']} chunks"
        self.stdout.write(
            f"added {counts['added']}, unchanged {counts['unchanged']}, replaced {counts['replaced']}, "
            f"failed {counts['failed']}; {chunks} in {seconds:.1f}s"
        )
        if os.environ.get("AIHUB_INGEST_SUMMARY_JSON"):
            self.stdout.write(str(counts))
