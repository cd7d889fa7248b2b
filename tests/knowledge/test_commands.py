"""manage.py ingest / reembed / reindex, end to end on real folders."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aihub.access.models import Tenant
from knowledge.embedders import Embedder
from knowledge.models import Chunk, Collection, Document
from tests.factories import TenantFactory
from tests.knowledge.factories import CollectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant(minilm: Embedder) -> Tenant:
    return TenantFactory.create(slug="acme")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("Apples are red or green.")
    (root / "b.md").write_text("# Bananas\n\nBananas are yellow.")
    (root / "sub" / "c.json").write_text('{"fruit": "cherry", "colour": "red"}')
    (root / ".hidden.txt").write_text("never ingested")
    return root


def ingest(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("ingest", *args, "--no-progress", stdout=out)
    except CommandError as exc:
        return out.getvalue() + f"\nCommandError: {exc}", 1
    return out.getvalue(), 0


def test_a_folder_is_ingested_recursively_with_metadata_and_a_summary(tenant: Tenant, folder: Path) -> None:
    output, code = ingest("fruit", str(folder), "--tenant", "acme", "--create", "--recursive", "-m", "team=food")
    assert code == 0, output
    assert "Created collection 'fruit'" in output
    assert "added 3, unchanged 0, replaced 0, failed 0; 3 chunks" in output
    documents = Document.objects.filter(collection__slug="fruit")
    assert sorted(d.title for d in documents) == ["a.txt", "b.md", "c.json"]
    assert all(d.status == "ready" and d.metadata == {"team": "food"} for d in documents)

    # Again: nothing changes. Then one file changes and is replaced, not added.
    assert "added 0, unchanged 3, replaced 0, failed 0" in ingest("fruit", str(folder), "-r")[0]
    (folder / "a.txt").write_text("Apples are sometimes yellow.")
    output, code = ingest("fruit", str(folder), "-r")
    assert "added 0, unchanged 2, replaced 1, failed 0" in output
    assert Chunk.objects.filter(document__title="a.txt").get().text == "Apples are sometimes yellow."


def test_without_recursive_only_the_top_folder_and_globs_pick_files(tenant: Tenant, folder: Path) -> None:
    CollectionFactory.create(tenant=tenant, slug="fruit")
    output, code = ingest("fruit", str(folder))
    assert "added 2," in output
    output, code = ingest("fruit", str(folder / "**" / "*.json"), "-r")
    assert "added 1," in output and code == 0


def test_failures_are_reported_and_make_the_exit_status_non_zero(tenant: Tenant, folder: Path) -> None:
    CollectionFactory.create(tenant=tenant, slug="fruit")
    (folder / "empty.txt").write_text("   ")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02\x03")
    output, code = ingest("fruit", str(folder), str(folder / "missing.pdf"))
    assert code == 1
    assert "empty.txt: The document has no text" in output
    assert "binary.txt: Cannot read" in output
    assert "missing.pdf: no such file or folder" in output
    assert "added 2, unchanged 0, replaced 0, failed 3" in output
    assert Document.objects.filter(status="ready").count() == 2


def test_an_unknown_collection_or_tenant_is_an_error_line(tenant: Tenant, folder: Path) -> None:
    with pytest.raises(CommandError, match="No collection 'nope'"):
        call_command("ingest", "nope", str(folder), stdout=io.StringIO())
    with pytest.raises(CommandError, match="No tenant 'other'"):
        call_command("ingest", "nope", str(folder), "--tenant", "other", stdout=io.StringIO())


def test_ctrl_c_leaves_no_half_ingested_document(tenant: Tenant, folder: Path, monkeypatch: Any) -> None:
    CollectionFactory.create(tenant=tenant, slug="fruit")
    from knowledge.management.commands import ingest as command

    calls = {"n": 0}
    real = command.document_ingest

    def interrupted_on_the_second(**kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(command, "document_ingest", interrupted_on_the_second)
    with pytest.raises(SystemExit) as exited:
        call_command("ingest", "fruit", str(folder), "--no-progress", stdout=io.StringIO())
    assert exited.value.code == 130
    assert list(Document.objects.values_list("status", flat=True)) == ["ready"]


def test_reembed_changes_chunking_and_reingests_everything(tenant: Tenant, folder: Path) -> None:
    ingest("fruit", str(folder), "--tenant", "acme", "--create", "-r")
    out = io.StringIO()
    call_command("reembed", "fruit", "--chunk-size", "32", "--chunk-overlap", "4", stdout=out)
    assert "3 ready, 0 failed" in out.getvalue()
    assert Collection.objects.get(slug="fruit").chunk_size == 32
    out = io.StringIO()
    call_command("reindex", "fruit", stdout=out)
    assert "3 ready, 0 failed" in out.getvalue()
    with pytest.raises(CommandError, match="chunk_size"):
        call_command("reembed", "fruit", "--chunk-size", "5000", stdout=io.StringIO())
