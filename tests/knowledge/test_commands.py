"""manage.py ingest / reembed / reindex, end to end on real folders."""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
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
from tests.workers import Worker, wait_for

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


def test_an_unreadable_file_is_an_error_line_and_the_others_are_ingested(
    tenant: Tenant, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CollectionFactory.create(tenant=tenant, slug="fruit")
    locked = folder / "a.txt"
    locked.chmod(0)
    # The test may run as root, whom file modes do not stop; the OS's refusal is then what it would have said.
    read_bytes = Path.read_bytes

    def refused_for_the_locked_file(self: Path) -> bytes:
        if self == locked.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refused_for_the_locked_file)
    output, code = ingest("fruit", str(folder))
    assert code == 1
    assert f"error: {locked}: cannot read it (Permission denied)" in output
    assert "added 1, unchanged 0, replaced 0, failed 1" in output
    assert list(Document.objects.values_list("title", flat=True)) == ["b.md"]


def test_a_link_out_of_the_named_folder_is_reported_and_not_followed(
    tenant: Tenant, folder: Path, tmp_path: Path
) -> None:
    CollectionFactory.create(tenant=tenant, slug="fruit")
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("Not for the knowledge base.")
    (folder / "sub" / "innocent.txt").symlink_to(secret)
    (folder / "sub" / "alias.txt").symlink_to(folder / "a.txt")  # a link within the folder is fine

    output, code = ingest("fruit", str(folder), "-r")
    assert code == 1
    assert f"{folder / 'sub' / 'innocent.txt'}: a link that leads outside {folder}; not followed" in output
    assert "added 3, unchanged 0, replaced 0, failed 1" in output
    assert not Chunk.objects.filter(text__contains="knowledge base").exists()

    # Named directly, the same file is read: the operator asked for it.
    output, code = ingest("fruit", str(folder / "sub" / "innocent.txt"))
    assert code == 0 and "added 1," in output


def test_an_unknown_collection_or_tenant_is_an_error_line(tenant: Tenant, folder: Path) -> None:
    with pytest.raises(CommandError, match="No collection 'nope'"):
        call_command("ingest", "nope", str(folder), stdout=io.StringIO())
    with pytest.raises(CommandError, match="No tenant 'other'"):
        call_command("ingest", "nope", str(folder), "--tenant", "other", stdout=io.StringIO())


def test_ctrl_c_leaves_no_half_ingested_document(tenant: Tenant, folder: Path, monkeypatch: Any, settings: Any) -> None:
    CollectionFactory.create(tenant=tenant, slug="fruit")
    from knowledge import services

    # One chunk per batch: the first file is stored when the third is submitted; Ctrl-C comes while the second
    # one's chunks are being stored, with the third still in flight.
    settings.KNOWLEDGE_EMBED_BATCH_SIZE = 1
    calls = {"n": 0}
    real = services.document_chunks_replace

    def interrupted_on_the_second(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(services, "document_chunks_replace", interrupted_on_the_second)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("ingest", "fruit", str(folder), "-r", "--no-progress", stdout=out)
    assert exited.value.code == 130
    assert "added 1, unchanged 0, replaced 0, failed 0; 1 chunks" in out.getvalue()
    assert list(Document.objects.values_list("status", flat=True)) == ["ready"]
    assert Chunk.objects.count() == 1


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


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_async_queues_the_files_and_a_worker_ingests_them(
    tenant: Tenant, folder: Path, settings: Any, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(env={"DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT)})
    output, code = ingest("fruit", str(folder), "--tenant", "acme", "--create", "-r", "--async")
    assert code == 0, output
    assert "added 3, unchanged 0, replaced 0, failed 0; queued in" in output

    def all_ready() -> bool:
        statuses = set(Document.objects.values_list("status", flat=True))
        return statuses == {Document.Status.READY} or Document.Status.FAILED in statuses

    try:
        wait_for(all_ready, timeout=60, what="the worker to ingest the documents")
    except AssertionError:
        pytest.fail(f"not ingested; worker log:\n{worker.output()}")
    assert set(Document.objects.values_list("status", flat=True)) == {Document.Status.READY}
    assert Chunk.objects.filter(text__contains="Bananas are yellow.").exists()
