from __future__ import annotations

from django.db import migrations

from knowledge.operations import KeepFullTextInStep


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0001_collections_documents_chunks")]

    operations = [KeepFullTextInStep()]
