"""``manage.py reindex COLLECTION``: chunk and embed every document again with the collection's settings."""

from __future__ import annotations

from knowledge.management.commands.reembed import Command as ReembedCommand


class Command(ReembedCommand):
    help = "Re-chunk and re-embed every document of a collection with its current settings."
    changes_settings = False
