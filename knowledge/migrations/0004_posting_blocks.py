import django.db.models.deletion
from django.db import migrations, models


def index_existing_chunks(apps, schema_editor):
    # The live module, not the historical models: the index is written in raw SQL against these very tables.
    # (0003 made the posting rows this replaces; existing chunks are indexed here, once, in blocks.)
    from knowledge.keywords import collection_reindex

    Collection = apps.get_model("knowledge", "Collection")
    for collection in Collection.objects.all():
        collection_reindex(collection=collection)


class Migration(migrations.Migration):

    dependencies = [
        ("knowledge", "0003_keyword_index"),
    ]

    operations = [
        migrations.DeleteModel(name="Posting"),
        migrations.RemoveField(model_name="term", name="max_impact"),
        migrations.RemoveField(model_name="term", name="impact_length_factor"),
        migrations.CreateModel(
            name="PostingBlock",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("size", models.PositiveIntegerField()),
                ("first_chunk", models.BigIntegerField()),
                ("last_chunk", models.BigIntegerField()),
                ("postings", models.BinaryField()),
                (
                    "term",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="knowledge.term"
                    ),
                ),
            ],
        ),
        migrations.RunPython(index_existing_chunks, migrations.RunPython.noop),
    ]
